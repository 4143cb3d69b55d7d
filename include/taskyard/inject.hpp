//
// taskyard/inject.hpp
// ~~~~~~~~~~~~~~~~~~~
//
// What App::add_task accepts, decided at compile time. Sanic calls `task(app)` and falls back to
// `task()` on TypeError; here the signature decides before anything runs:
//
//   - an asio::awaitable<T>                              the task itself, made by the caller;
//   - a callable invocable as f(App&) returning one      the App is injected (this wins);
//   - a callable invocable as f() returning one          called without arguments.
//
// Generic lambdas, std::bind_front results and function pointers are callables like any other.
// Anything else fails to compile with a message that lists the accepted forms.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_INJECT_HPP
#define TASKYARD_INJECT_HPP

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <concepts>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace taskyard {

class App;

/// True for boost::asio::awaitable<T> (on the default executor, any_io_executor).
template <typename T>
struct is_awaitable : std::false_type {};

template <typename T>
struct is_awaitable<boost::asio::awaitable<T, boost::asio::any_io_executor>> : std::true_type {};

template <typename T>
inline constexpr bool is_awaitable_v = is_awaitable<std::remove_cvref_t<T>>::value;

/// A callable that asks for the App: invocable as f(App&).
template <typename F>
concept injects_app = std::invocable<F&, App&>;

/// A callable that takes nothing: invocable as f(), and not as f(App&).
template <typename F>
concept takes_nothing = !injects_app<F> && std::invocable<F&>;

namespace detail {

template <typename F>
struct factory_result {
  using type = void;
};

template <injects_app F>
struct factory_result<F> {
  using type = std::invoke_result_t<F&, App&>;
};

template <takes_nothing F>
struct factory_result<F> {
  using type = std::invoke_result_t<F&>;
};

template <typename A>
struct awaitable_value;

template <typename T>
struct awaitable_value<boost::asio::awaitable<T, boost::asio::any_io_executor>> {
  using type = T;
};

} // namespace detail

/// A callable add_task can start: it asks for the App or for nothing, and returns an awaitable.
template <typename F>
concept task_factory = (injects_app<F> ||
                        takes_nothing<F>)&&is_awaitable_v<typename detail::factory_result<F>::type>;

/// Anything add_task accepts: an awaitable, or a task_factory.
template <typename S>
concept task_source = is_awaitable_v<S> || task_factory<std::decay_t<S>>;

/// The type a task made from S produces (the T of its awaitable<T>).
template <task_source S>
struct task_result {
  using type = typename detail::awaitable_value<std::decay_t<S>>::type;
};

template <task_source S>
requires(!is_awaitable_v<S>) struct task_result<S> {
  using type = typename detail::awaitable_value<
      std::remove_cvref_t<typename detail::factory_result<std::decay_t<S>>::type>>::type;
};

template <task_source S>
using task_result_t = typename task_result<S>::type;

namespace detail {

/// Fails compilation, with a message naming the accepted forms, when S is not a task_source.
template <typename S>
constexpr void check_task_source() {
  using F = std::decay_t<S>;
  if constexpr (!task_source<S>) {
    static_assert(
        injects_app<F> || takes_nothing<F> || is_awaitable_v<S>,
        "taskyard::App::add_task accepts: an asio::awaitable<T>; a callable invocable as "
        "f(taskyard::App&) returning asio::awaitable<T> (the App is injected); or a callable "
        "invocable as f() returning asio::awaitable<T>. This argument is none of them.");
    static_assert(
        is_awaitable_v<typename factory_result<F>::type>,
        "taskyard::App::add_task: the callable must return asio::awaitable<T> (is it a coroutine "
        "declared to return boost::asio::awaitable<T>?). Accepted: an asio::awaitable<T>; a "
        "callable invocable as f(taskyard::App&) or f() returning asio::awaitable<T>.");
  }
}

/// A task's callable as the task keeps it: by value if moving it cannot throw, otherwise in a box
/// of its own (constructed here, once), so that moving what holds it never throws.
template <typename S, typename Source>
auto hold(Source&& source) {
  if constexpr (std::is_nothrow_move_constructible_v<S>)
    return S(std::forward<Source>(source));
  else
    return std::make_unique<S>(std::forward<Source>(source));
}

/// The callable that hold() returned holds.
template <typename S>
S& held(S& f) noexcept {
  return f;
}
template <typename S>
S& held(std::unique_ptr<S>& f) noexcept {
  return *f;
}

} // namespace detail

} // namespace taskyard

#endif // TASKYARD_INJECT_HPP
