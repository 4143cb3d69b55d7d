// The websocket pattern, from Sanic's "Background tasks" page:
//
//   async def receiver(ws):
//       while True:
//           message = await ws.recv()
//           if not message:
//               break
//           print(f"Received: {message}")
//
//   @app.websocket("/feed")
//   async def feed(request, ws):
//       task_name = f"receiver:{request.id}"
//       request.app.add_task(receiver(ws), name=task_name)
//       try:
//           while True:
//               await request.app.event("my.custom.event")
//               await ws.send("A message")
//       finally:
//           # When the websocket closes, let's cleanup the task
//           await request.app.cancel_task(task_name)
//           request.app.purge_tasks()
//
// receiver() and feed() below are those two functions, line for line. Around them, a small server
// on Boost.Beast plays Sanic's part, on one port:
//
//   GET  /feed    the websocket: each connection gets a feed and a receiver task
//   POST /notify  app.dispatch("my.custom.event"); answers "woke <n>", n the feeds it woke
//   GET  /tasks   introspection: "waiters <n>" (feeds waiting on the event), "alive <n>" (receiver
//                 coroutines alive), then "task <name> <state>" per registered task
//
// Who dispatches "my.custom.event" the seed leaves open: here it is whoever POSTs /notify, so that
// a client (or a test) decides exactly when and how often a message goes out.
//
// How the Python maps onto C++:
//
// - Tasks. The acceptor is a task added before app.run(), named "acceptor". Each connection is an
//   unnamed task, as Sanic's request handlers are: named tasks stay in the registry until purged,
//   and a feed cannot purge itself while it runs. The receiver is named "receiver:<id>", <id> a
//   counter (Sanic's request.id).
// - One websocket, two tasks. Beast allows one read and one write in flight on a stream at once,
//   but only if both run on one strand, the stream's, and it runs each operation's steps on the
//   executor of the caller's completion handler. Every taskyard task has a strand of its own, so
//   the receiver (which only reads) and the feed (which only writes) would touch the stream from
//   two strands. The `websocket` class below, the seed's `ws`, therefore runs each operation as a
//   small coroutine on the connection's strand, which is the stream's executor, and the task
//   awaits it from its own strand. A cancellation of the task is forwarded to that coroutine on
//   the connection's strand too.
// - The end of a connection. ws.recv() returns nothing once the connection has ended, whichever
//   way: close frame, EOF or reset (Sanic's recv() returns None), and the receiver returns. Sanic
//   then cancels the feed handler for us; here the feed waits for the event *or* the end of the
//   receiver task (`||`), so the feed's loop ends too, even while it waits on the event. Waiting
//   on a finished task completes at once, so that end cannot be missed.
// - finally. A C++ catch handler cannot co_await, so the feed catches and keeps the exception,
//   cleans up after the try, and rethrows. A cancelled coroutine sees operation_aborted at every
//   later co_await, so the clean-up first resets its cancellation state. cancel_task gets
//   missing_task::ignore: another feed's purge_tasks may have removed this receiver already, once
//   it had finished (Sanic would raise there).
// - Shutdown. SIGINT or SIGTERM starts the App's stop sequence: shutdown_tasks cancels the
//   acceptor, every connection and every receiver; each feed runs its finally; each socket closes
//   as the last coroutine frame holding it goes.
//
// Output: "listening on <address>:<port>" once bound (port 0 picks a free one), then the seed's
// "Received: <message>" lines.
//
// Usage: example_websocket_feed [port] [--address A] [--threads N]
//        (defaults: port 8080, address 127.0.0.1, 1 thread)
#include <taskyard/taskyard.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using taskyard::App;

namespace {

std::atomic<std::uint64_t> next_request_id{1}; // Sanic's request.id
std::atomic<int> receivers_alive{0};           // receiver coroutines alive, for GET /tasks

struct alive_receiver {
  alive_receiver() { receivers_alive.fetch_add(1); }
  ~alive_receiver() { receivers_alive.fetch_sub(1); }
  alive_receiver(const alive_receiver&) = delete;
  alive_receiver& operator=(const alive_receiver&) = delete;
};

/// print(), safe from any thread: one whole line at a time, flushed.
void print(const std::string& line) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  std::cout << line << std::endl;
}

/// The seed's `ws`: a server-side websocket that two tasks may use at once, one receiving and one
/// sending. Every operation runs on the connection's strand (see the header comment).
class websocket : public std::enable_shared_from_this<websocket> {
public:
  explicit websocket(beast::tcp_stream stream) : ws_(std::move(stream)) {}

  /// Completes the opening handshake of the upgrade `request`.
  asio::awaitable<void> accept(http::request<http::string_body> request) {
    return on_strand(
        [self = shared_from_this(), request = std::move(request)]() -> asio::awaitable<void> {
          self->ws_.set_option(
              beast::websocket::stream_base::timeout::suggested(beast::role_type::server));
          self->ws_.text(true);
          co_await self->ws_.async_accept(request, asio::use_awaitable);
        });
  }

  /// The next message, or nothing once the connection has ended, politely or not. Throws
  /// operation_aborted if the caller is cancelled.
  asio::awaitable<std::optional<std::string>> recv() {
    return on_strand([self = shared_from_this()]() -> asio::awaitable<std::optional<std::string>> {
      beast::flat_buffer buffer;
      auto [ec, size] = co_await self->ws_.async_read(buffer, asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted) throw boost::system::system_error(ec);
      if (ec) co_return std::nullopt;
      co_return beast::buffers_to_string(buffer.data());
    });
  }

  /// Sends a text message. Throws if the connection has ended.
  asio::awaitable<void> send(std::string text) {
    return on_strand(
        [self = shared_from_this(), text = std::move(text)]() -> asio::awaitable<void> {
          co_await self->ws_.async_write(asio::buffer(text), asio::use_awaitable);
        });
  }

private:
  /// Runs the coroutine `op()` on the stream's strand and waits for it. The caller's cancellation
  /// is emitted to it on that strand, through a signal that both sides own: co_spawn's own
  /// forwarding (Boost 1.81) dispatches a pointer into the caller's cancellation slot, which the
  /// caller frees if `op` completes first (Asio issue 1332).
  template <typename Op>
  auto on_strand(Op op) -> decltype(op()) {
    using result = typename decltype(op())::value_type;
    auto strand = ws_.get_executor();
    auto forward = std::make_shared<asio::cancellation_signal>();
    asio::cancellation_state caller = co_await asio::this_coro::cancellation_state;
    if (caller.slot().is_connected()) {
      caller.slot().assign([strand, forward](asio::cancellation_type type) {
        asio::dispatch(strand, [forward, type] { forward->emit(type); });
      });
    }
    auto token = asio::bind_cancellation_slot(forward->slot(), asio::use_awaitable);
    if constexpr (std::is_void_v<result>) {
      co_await asio::co_spawn(strand, std::move(op), token);
    } else {
      co_return co_await asio::co_spawn(strand, std::move(op), token);
    }
  }

  beast::websocket::stream<beast::tcp_stream> ws_;
};

// --- The seed ---------------------------------------------------------------------------------

asio::awaitable<void> receiver(std::shared_ptr<websocket> ws) {
  const alive_receiver alive; // not in the seed: counted by GET /tasks
  while (true) {
    std::optional<std::string> message = co_await ws->recv();
    if (!message) break;
    print("Received: " + *message);
  }
}

asio::awaitable<void> feed(App& app, std::uint64_t request_id, std::shared_ptr<websocket> ws) {
  using namespace asio::experimental::awaitable_operators;
  const std::string task_name = "receiver:" + std::to_string(request_id);
  taskyard::Task<> receiving = app.add_task(receiver(ws), task_name);
  std::exception_ptr failure;
  try {
    while (true) {
      auto woken = co_await (app.event("my.custom.event") || receiving.wait());
      if (woken.index() == 1) break; // the receiver is done: the connection has ended
      co_await ws->send("A message");
    }
  } catch (const asio::multiple_exceptions& e) {
    failure = e.first_exception(); // both sides of || failed: both cancelled, at shutdown
  } catch (...) {
    failure = std::current_exception();
  }
  // finally: when the websocket closes, clean up the task.
  co_await asio::this_coro::reset_cancellation_state();
  co_await app.cancel_task(task_name, {}, taskyard::missing_task::ignore);
  app.purge_tasks();
  if (failure) std::rethrow_exception(failure);
}

// --- The server around it ---------------------------------------------------------------------

std::string task_state(const taskyard::Task<>& task) {
  if (!task.done()) return "running";
  if (task.cancelled()) return "cancelled";
  return task.failed() ? "failed" : "succeeded";
}

/// GET /tasks.
std::string tasks_report(const App& app) {
  std::ostringstream out;
  out << "waiters " << app.event_waiters("my.custom.event") << '\n';
  out << "alive " << receivers_alive.load() << '\n';
  for (const auto& task : app.tasks())
    out << "task " << task.name() << ' ' << task_state(task) << '\n';
  return out.str();
}

http::response<http::string_body> route(App& app, const http::request<http::string_body>& request) {
  auto respond = [&request](http::status status, std::string body) {
    http::response<http::string_body> response{status, request.version()};
    response.set(http::field::content_type, "text/plain");
    response.keep_alive(request.keep_alive());
    response.body() = std::move(body);
    response.prepare_payload();
    return response;
  };
  const std::string_view target = request.target();
  if (target == "/notify" && request.method() == http::verb::post)
    return respond(http::status::ok,
                   "woke " + std::to_string(app.dispatch("my.custom.event")) + '\n');
  if (target == "/tasks" && request.method() == http::verb::get)
    return respond(http::status::ok, tasks_report(app));
  if (target == "/feed") return respond(http::status::upgrade_required, "/feed is a websocket\n");
  return respond(http::status::not_found, "not found\n");
}

/// One connection: HTTP requests until it closes, or until one upgrades it to the feed.
asio::awaitable<void> serve_connection(App& app, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  try {
    while (true) {
      http::request<http::string_body> request;
      co_await http::async_read(stream, buffer, request, asio::use_awaitable);
      if (beast::websocket::is_upgrade(request) && request.target() == "/feed") {
        auto ws = std::make_shared<websocket>(std::move(stream));
        co_await ws->accept(std::move(request));
        co_await feed(app, next_request_id.fetch_add(1), std::move(ws));
        co_return;
      }
      auto response = route(app, request);
      co_await http::async_write(stream, response, asio::use_awaitable);
      if (!response.keep_alive()) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  } catch (const boost::system::system_error& e) {
    // Cancelled (the server is stopping): the task ends cancelled. Any other error means that the
    // client went away or broke the protocol: the connection just ends.
    if (e.code() == asio::error::operation_aborted) throw;
  } catch (const taskyard::app_stopped&) { // the server began stopping as the feed started
  }
}

asio::awaitable<void> accept_connections(App& app, tcp::acceptor acceptor) {
  while (true) {
    // Each connection's socket, hence its stream, gets a strand of its own.
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(app.io_context()),
                                                       asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted) throw boost::system::system_error(ec); // stopping
    if (ec) { // out of file descriptors, say: a server that cannot accept stops
      std::cerr << "example_websocket_feed: accept failed: " << ec.message() << '\n';
      app.stop();
      co_return;
    }
    try {
      app.add_task(serve_connection(app, std::move(socket)));
    } catch (const taskyard::app_stopped&) {
      co_return; // the server is stopping
    }
  }
}

} // namespace

int main(int argc, char* argv[]) {
  unsigned short port = 8080;
  std::string address = "127.0.0.1";
  std::size_t threads = 1;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (arg == "--address" && i + 1 < argc) {
        address = argv[++i];
      } else if (arg == "--threads" && i + 1 < argc) {
        threads = std::stoul(argv[++i]);
      } else if (!arg.empty() && arg[0] != '-') {
        const unsigned long value = std::stoul(std::string(arg));
        if (value > 65535) throw std::out_of_range("port " + std::string(arg));
        port = static_cast<unsigned short>(value);
      } else {
        throw std::invalid_argument("unknown argument " + std::string(arg));
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "usage: example_websocket_feed [port] [--address A] [--threads N] (" << e.what()
              << ")\n";
    return 2;
  }

  App app{"Feed"};
  tcp::acceptor acceptor(app.io_context(), {asio::ip::make_address(address), port});
  print("listening on " + acceptor.local_endpoint().address().to_string() + ':' +
        std::to_string(acceptor.local_endpoint().port()));
  app.add_task(accept_connections(app, std::move(acceptor)), "acceptor");
  app.run({.threads = threads}); // until SIGINT or SIGTERM
}
