// End-to-end test of examples/websocket_feed.cpp, with Beast clients.
//
// Starts the server as a child process on a free loopback port (two threads), then, all on one
// io_context in this process:
//   1. connects 50 websocket clients to /feed at once;
//   2. three times: waits until GET /tasks reports 50 feeds waiting on the event, POSTs /notify
//      (which must wake 50), and waits until every client has received the message;
//   3. has every client send a message, and waits for the server's "Received: <message>" lines;
//   4. closes 25 clients abruptly (the socket, no close frame: some with a reset, some with a FIN)
//      and 25 politely (a close frame, whose answer they wait for);
//   5. checks, through GET /tasks, that no receiver:* task is registered or alive any more, and
//      that each client received exactly three "A message";
//   6. connects 5 more clients (and keeps an idle HTTP connection open), sends SIGTERM, and checks
//      that the server closes every connection and exits with status 0, having printed nothing on
//      stderr and nothing on stdout but its port line and the expected "Received:" lines.
//
// Nothing waits on time except the final "eventually no receiver" check, which polls GET /tasks
// with 10 ms pauses (at most 500 times), and the 60 s deadline of the whole run. Every other wait
// is on the thing itself: a response, a message, a line of the server's output. The server is
// killed if the test fails, and also if this process dies (PR_SET_PDEATHSIG).
//
// Usage: e2e_websocket_feed <path to example_websocket_feed>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr int clients_count = 50;
constexpr int rounds = 3;
constexpr int late_clients_count = 5;

void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

std::string step = "starting"; // what the test is doing, for the failure message

/// Wakes every coroutine waiting on it; each then re-checks what it waits for. One thread only.
class condition {
public:
  explicit condition(asio::any_io_executor ex)
      : timer_(ex, asio::steady_timer::time_point::max()) {}
  void notify() { timer_.cancel(); }
  asio::awaitable<void> wait_until(std::function<bool()> done) {
    while (!done()) co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }

private:
  asio::steady_timer timer_;
};

// --- The server process ------------------------------------------------------------------------

class server_process {
public:
  server_process(asio::io_context& ioc, const std::string& path, std::vector<std::string> args)
      : out(ioc), err(ioc) {
    int out_pipe[2];
    int err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0)
      throw std::system_error(errno, std::generic_category(), "pipe2");
    args.insert(args.begin(), path);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL); // never outlive the test
      if (::getppid() != parent) ::_exit(127);
      ::dup2(out_pipe[1], STDOUT_FILENO);
      ::dup2(err_pipe[1], STDERR_FILENO);
      ::execv(path.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    out.assign(out_pipe[0]);
    err.assign(err_pipe[0]);
  }

  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  ~server_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  void signal(int sig) const { ::kill(pid_, sig); }

  /// Waits for the process to exit (call once its output has ended) and returns its wait status.
  int wait_exit() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
    pid_ = -1;
    return status;
  }

  asio::posix::stream_descriptor out, err;

private:
  pid_t pid_ = -1;
};

/// What the server printed on one of its streams, as it comes.
struct output {
  std::string text;
  bool ended = false;

  [[nodiscard]] std::vector<std::string> lines() const {
    std::vector<std::string> result;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) result.push_back(line);
    return result;
  }
  [[nodiscard]] int count_line(const std::string& line) const {
    int n = 0;
    for (const auto& l : lines()) n += (l == line);
    return n;
  }
};

asio::awaitable<void> collect(asio::posix::stream_descriptor& from, output& into,
                              condition& changed) {
  char chunk[4096];
  while (true) {
    auto [ec, n] =
        co_await from.async_read_some(asio::buffer(chunk), asio::as_tuple(asio::use_awaitable));
    into.text.append(chunk, n);
    if (ec) break;
    changed.notify();
  }
  into.ended = true;
  changed.notify();
}

// --- HTTP --------------------------------------------------------------------------------------

/// One keep-alive HTTP connection to the server.
class http_client {
public:
  http_client(asio::any_io_executor ex, tcp::endpoint server) : stream_(ex), server_(server) {}

  asio::awaitable<std::string> request(http::verb verb, std::string target) {
    if (!connected_) {
      co_await stream_.async_connect(server_, asio::use_awaitable);
      connected_ = true;
    }
    http::request<http::empty_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.prepare_payload();
    co_await http::async_write(stream_, req, asio::use_awaitable);
    http::response<http::string_body> res;
    co_await http::async_read(stream_, buffer_, res, asio::use_awaitable);
    require(res.result() == http::status::ok,
            target + " answered " + std::to_string(res.result_int()) + ": " + res.body());
    co_return res.body();
  }

  /// Waits until the server closes the connection; returns the error the read ended with.
  asio::awaitable<beast::error_code> closed_by_server() {
    http::response<http::string_body> res;
    auto [ec, n] =
        co_await http::async_read(stream_, buffer_, res, asio::as_tuple(asio::use_awaitable));
    co_return ec;
  }

private:
  beast::tcp_stream stream_;
  tcp::endpoint server_;
  beast::flat_buffer buffer_;
  bool connected_ = false;
};

/// GET /tasks, parsed.
struct tasks_report {
  int waiters = -1;
  int alive = -1;
  std::map<std::string, std::string> tasks; // name -> state
  std::string text;
  int polls = 1; // how many GET /tasks it took

  [[nodiscard]] int receivers() const {
    int n = 0;
    for (const auto& [name, state] : tasks) n += name.rfind("receiver:", 0) == 0;
    return n;
  }
  [[nodiscard]] int running_receivers() const {
    int n = 0;
    for (const auto& [name, state] : tasks)
      n += name.rfind("receiver:", 0) == 0 && state == "running";
    return n;
  }
};

tasks_report parse_tasks(const std::string& text) {
  tasks_report report;
  report.text = text;
  std::istringstream in(text);
  for (std::string word; in >> word;) {
    if (word == "waiters") {
      in >> report.waiters;
    } else if (word == "alive") {
      in >> report.alive;
    } else if (word == "task") {
      std::string name, state;
      in >> name >> state;
      report.tasks[name] = state;
    } else {
      throw std::runtime_error("unexpected GET /tasks answer:\n" + text);
    }
  }
  require(report.waiters >= 0 && report.alive >= 0, "incomplete GET /tasks answer:\n" + text);
  return report;
}

/// GETs /tasks until `done(report)`, at most `tries` times, each request sent when the previous
/// answer came, after `pause` (zero: at once).
asio::awaitable<tasks_report> poll_tasks(http_client& http,
                                         std::function<bool(const tasks_report&)> done, int tries,
                                         std::chrono::milliseconds pause, const std::string& what) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  tasks_report report;
  for (int i = 0; i < tries; ++i) {
    report = parse_tasks(co_await http.request(http::verb::get, "/tasks"));
    report.polls = i + 1;
    if (done(report)) co_return report;
    if (pause.count() > 0) {
      timer.expires_after(pause);
      co_await timer.async_wait(asio::use_awaitable);
    }
  }
  throw std::runtime_error("GET /tasks never showed " + what + " (" + std::to_string(tries) +
                           " tries); last answer:\n" + report.text);
}

// --- Websocket clients -------------------------------------------------------------------------

struct client {
  explicit client(asio::any_io_executor ex) : ws(ex) {}
  websocket::stream<beast::tcp_stream> ws;
  std::vector<std::string> received;
  bool reading = false;
  beast::error_code ended; // why the reader stopped
};

using client_ptr = std::shared_ptr<client>;

asio::awaitable<void> connect(client_ptr c, tcp::endpoint server) {
  co_await beast::get_lowest_layer(c->ws).async_connect(server, asio::use_awaitable);
  co_await c->ws.async_handshake("127.0.0.1:" + std::to_string(server.port()), "/feed",
                                 asio::use_awaitable);
}

/// Reads every message until the connection ends.
asio::awaitable<void> read_all(client_ptr c, condition& changed) {
  c->reading = true;
  while (true) {
    beast::flat_buffer buffer;
    auto [ec, n] = co_await c->ws.async_read(buffer, asio::as_tuple(asio::use_awaitable));
    if (ec) {
      c->ended = ec;
      break;
    }
    c->received.push_back(beast::buffers_to_string(buffer.data()));
    changed.notify();
  }
  c->reading = false;
  changed.notify();
}

/// Runs the coroutines concurrently and waits for all of them; rethrows the first failure.
asio::awaitable<void> all(std::vector<asio::awaitable<void>> coroutines) {
  auto ex = co_await asio::this_coro::executor;
  using op = decltype(asio::co_spawn(ex, std::declval<asio::awaitable<void>>(), asio::deferred));
  std::vector<op> ops;
  for (auto& c : coroutines) ops.push_back(asio::co_spawn(ex, std::move(c), asio::deferred));
  auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(ops))
                             .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

std::vector<client_ptr> make_clients(asio::any_io_executor ex, int n) {
  std::vector<client_ptr> clients;
  for (int i = 0; i < n; ++i) clients.push_back(std::make_shared<client>(ex));
  return clients;
}

asio::awaitable<void> connect_all(const std::vector<client_ptr>& clients, tcp::endpoint server,
                                  condition& changed) {
  std::vector<asio::awaitable<void>> connecting;
  for (const auto& c : clients) connecting.push_back(connect(c, server));
  co_await all(std::move(connecting));
  auto ex = co_await asio::this_coro::executor;
  for (const auto& c : clients) asio::co_spawn(ex, read_all(c, changed), asio::detached);
}

asio::awaitable<void> send_text(client_ptr c, std::string text) {
  co_await c->ws.async_write(asio::buffer(text), asio::use_awaitable);
}

// --- The scenario ------------------------------------------------------------------------------

struct world {
  server_process& server;
  output& out;
  output& err;
  condition& changed; // notified whenever a client or the server's output changes
};

asio::awaitable<void> scenario(world w) {
  auto ex = co_await asio::this_coro::executor;

  step = "reading the server's port line";
  co_await w.changed.wait_until(
      [&] { return w.out.text.find('\n') != std::string::npos || w.out.ended; });
  const std::string first = w.out.lines().empty() ? "" : w.out.lines().front();
  const std::string prefix = "listening on 127.0.0.1:";
  require(first.rfind(prefix, 0) == 0,
          "unexpected first line: '" + first + "'; stderr: " + w.err.text);
  const auto port = static_cast<unsigned short>(std::stoi(first.substr(prefix.size())));
  const tcp::endpoint server{asio::ip::make_address("127.0.0.1"), port};
  std::cout << "server on port " << port << std::endl;

  http_client http(ex, server);
  step = "asking an idle server for its tasks";
  auto report = parse_tasks(co_await http.request(http::verb::get, "/tasks"));
  require(report.waiters == 0 && report.alive == 0 && report.receivers() == 0 &&
              report.tasks.count("acceptor") == 1 && report.tasks["acceptor"] == "running",
          "unexpected tasks of an idle server:\n" + report.text);

  step = "connecting 50 clients";
  auto clients = make_clients(ex, clients_count);
  co_await connect_all(clients, server, w.changed);
  std::cout << clients_count << " clients connected" << std::endl;

  // A receiver task is registered before its coroutine starts (and counts itself alive).
  auto all_waiting = [](int n) {
    return [n](const tasks_report& r) { return r.waiters == n && r.alive == n; };
  };
  for (int round = 1; round <= rounds; ++round) {
    step = "round " + std::to_string(round) + ": waiting for 50 waiters";
    report = co_await poll_tasks(http, all_waiting(clients_count), 1000, 0ms,
                                 "50 waiters and 50 receivers alive");
    require(report.alive == clients_count && report.running_receivers() == clients_count,
            "50 feeds wait but not 50 receivers run:\n" + report.text);
    step = "round " + std::to_string(round) + ": POST /notify";
    const std::string woke = co_await http.request(http::verb::post, "/notify");
    require(woke == "woke 50\n", "POST /notify answered '" + woke + "'");
    step = "round " + std::to_string(round) + ": every client receiving its message";
    co_await w.changed.wait_until([&] {
      for (const auto& c : clients)
        if (static_cast<int>(c->received.size()) < round) return false;
      return true;
    });
    std::cout << "round " << round << ": 50 feeds waiting after " << report.polls
              << " GET /tasks, woke 50, every client got its message" << std::endl;
  }
  // Every feed waits again only after it has sent its message: then nothing more is coming.
  step = "waiting for the feeds to wait again";
  co_await poll_tasks(http, all_waiting(clients_count), 1000, 0ms,
                      "50 waiters and 50 receivers alive");
  for (std::size_t i = 0; i < clients.size(); ++i)
    require(clients[i]->received == std::vector<std::string>(rounds, "A message"),
            "client " + std::to_string(i) + " received " +
                std::to_string(clients[i]->received.size()) + " messages, not 3 'A message'");

  step = "clients sending messages";
  std::vector<asio::awaitable<void>> sending;
  for (std::size_t i = 0; i < clients.size(); ++i)
    sending.push_back(send_text(clients[i], "hello from client " + std::to_string(i)));
  co_await all(std::move(sending));
  step = "waiting for the server's Received lines";
  co_await w.changed.wait_until([&] {
    for (std::size_t i = 0; i < clients.size(); ++i)
      if (w.out.count_line("Received: hello from client " + std::to_string(i)) == 0) return false;
    return true;
  });
  std::cout << "the server received a message from every client" << std::endl;

  step = "closing 25 clients abruptly and 25 politely";
  std::vector<asio::awaitable<void>> closing;
  for (int i = 0; i < clients_count; ++i) {
    auto& c = clients[static_cast<std::size_t>(i)];
    if (i < clients_count / 2) {
      auto& socket = beast::get_lowest_layer(c->ws).socket();
      if (i % 2 == 0) socket.set_option(tcp::socket::linger(true, 0)); // a reset, not a FIN
      socket.close();
    } else {
      closing.push_back([](client_ptr c) -> asio::awaitable<void> {
        co_await c->ws.async_close(websocket::close_code::normal, asio::use_awaitable);
      }(c));
    }
  }
  co_await all(std::move(closing));
  step = "waiting for the polite clients' readers to see the close";
  co_await w.changed.wait_until([&] {
    for (const auto& c : clients)
      if (c->reading) return false;
    return true;
  });
  // async_close succeeded, so the server answered the close frame. A read pending meanwhile ends
  // with operation_aborted (Beast hands the close frame to the close operation), or with closed.
  for (int i = clients_count / 2; i < clients_count; ++i) {
    const auto& ended = clients[static_cast<std::size_t>(i)]->ended;
    require(ended == websocket::error::closed || ended == asio::error::operation_aborted,
            "polite client " + std::to_string(i) + "'s reader ended with: " + ended.message());
  }

  step = "waiting until no receiver is registered or alive";
  report = co_await poll_tasks(
      http,
      [](const tasks_report& r) { return r.alive == 0 && r.receivers() == 0 && r.waiters == 0; },
      500, 10ms, "no receiver and no waiter");
  require(report.tasks.count("acceptor") == 1 && report.tasks["acceptor"] == "running",
          "the acceptor is not running:\n" + report.text);
  for (std::size_t i = 0; i < clients.size(); ++i)
    require(clients[i]->received.size() == static_cast<std::size_t>(rounds),
            "client " + std::to_string(i) + " received " +
                std::to_string(clients[i]->received.size()) + " messages in all, not 3");
  std::cout << "all 50 clients gone: no receiver task registered or alive (" << report.polls
            << " GET /tasks, 10 ms apart)" << std::endl;

  step = "connecting 5 clients that stay until the server stops";
  auto late = make_clients(ex, late_clients_count);
  co_await connect_all(late, server, w.changed);
  report = co_await poll_tasks(http, all_waiting(late_clients_count), 1000, 0ms,
                               "5 waiters and 5 receivers alive");
  require(report.alive == late_clients_count && report.receivers() == late_clients_count,
          "5 feeds wait but not 5 receivers run:\n" + report.text);
  std::vector<asio::awaitable<void>> greeting;
  for (std::size_t i = 0; i < late.size(); ++i)
    greeting.push_back(send_text(late[i], "still here " + std::to_string(i)));
  co_await all(std::move(greeting));
  co_await w.changed.wait_until([&] {
    for (std::size_t i = 0; i < late.size(); ++i)
      if (w.out.count_line("Received: still here " + std::to_string(i)) == 0) return false;
    return true;
  });

  step = "SIGTERM with 5 websockets and an idle HTTP connection open";
  std::cout << "SIGTERM with 5 websockets and an idle HTTP connection open" << std::endl;
  w.server.signal(SIGTERM);
  const beast::error_code http_end = co_await http.closed_by_server();
  require(http_end == http::error::end_of_stream || http_end == asio::error::eof ||
              http_end == asio::error::connection_reset,
          "the idle HTTP connection ended with: " + http_end.message());
  step = "waiting for the server to close every websocket and exit";
  co_await w.changed.wait_until([&] {
    for (const auto& c : late)
      if (c->reading) return false;
    return w.out.ended && w.err.ended;
  });
  for (const auto& c : late)
    require(c->received.empty(), "a late client received a message it was never sent");

  const int status = w.server.wait_exit();
  require(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the server did not exit with status 0 (wait status " + std::to_string(status) + ")");
  require(w.err.text.empty(), "the server printed on stderr:\n" + w.err.text);
  // stdout: the port line, then exactly the Received lines expected, each once, nothing else.
  std::map<std::string, int> expected;
  for (int i = 0; i < clients_count; ++i)
    expected["Received: hello from client " + std::to_string(i)] = 1;
  for (int i = 0; i < late_clients_count; ++i)
    expected["Received: still here " + std::to_string(i)] = 1;
  auto lines = w.out.lines();
  require(!lines.empty(), "no output");
  lines.erase(lines.begin());
  std::map<std::string, int> seen;
  for (const auto& line : lines) ++seen[line];
  require(seen == expected, "unexpected server output:\n" + w.out.text);
  std::cout << "the server exited with status 0, stderr empty, " << lines.size() + 1
            << " lines on stdout as expected" << std::endl;
}

} // namespace

int main(int argc, char* argv[]) {
  if (argc != 2) {
    std::cerr << "usage: e2e_websocket_feed <path to example_websocket_feed>\n";
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  asio::io_context ioc;
  output out, err;
  condition changed(ioc.get_executor());
  std::exception_ptr failure;
  bool finished = false;
  {
    server_process server(ioc, argv[1], {"0", "--threads", "2"});
    asio::co_spawn(ioc, collect(server.out, out, changed), asio::detached);
    asio::co_spawn(ioc, collect(server.err, err, changed), asio::detached);
    // Neither side of the || throws: it would then wait for the other one.
    auto run = [](world w, std::exception_ptr& failure) -> asio::awaitable<void> {
      try {
        co_await scenario(w);
      } catch (...) {
        failure = std::current_exception();
      }
    };
    auto deadline = [](std::chrono::seconds limit) -> asio::awaitable<void> {
      asio::steady_timer timer(co_await asio::this_coro::executor, limit);
      co_await timer.async_wait(asio::use_awaitable);
    };
    using namespace asio::experimental::awaitable_operators;
    asio::co_spawn(ioc, run({server, out, err, changed}, failure) || deadline(60s),
                   [&](std::exception_ptr e, std::variant<std::monostate, std::monostate> first) {
                     if (e && !failure) failure = e;
                     if (!e && first.index() == 1)
                       failure = std::make_exception_ptr(std::runtime_error("timed out (60 s)"));
                     finished = true;
                     ioc.stop(); // whatever is left (the readers of a failed run) is abandoned
                   });
    ioc.run();
    if (!finished) failure = std::make_exception_ptr(std::runtime_error("the io_context ran dry"));
    // On failure, the server is killed here if it is still running.
  }
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      std::cerr << "FAILED while " << step << ": " << e.what() << '\n';
    }
    std::cerr << "--- server stdout ---\n" << out.text << "--- server stderr ---\n" << err.text;
    return 1;
  }
  std::cout << "PASSED" << std::endl;
  return 0;
}
