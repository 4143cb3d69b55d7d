//
// taskyard/detail/intrusive_list.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// A doubly-linked list whose nodes carry their own links, so that linking and unlinking never
// allocate: the registry's order, the App's unfinished tasks and each wait list use one. Not
// thread-safe: the owner's mutex guards it.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_INTRUSIVE_LIST_HPP
#define TASKYARD_DETAIL_INTRUSIVE_LIST_HPP

#include <cstddef>

namespace taskyard::detail {

/// The links a node carries for one list it can be in.
template <typename Node>
struct list_links {
  Node* prev = nullptr;
  Node* next = nullptr;
};

template <typename Node, list_links<Node> Node::*Links>
class intrusive_list {
public:
  intrusive_list() = default;
  intrusive_list(const intrusive_list&) = delete;
  intrusive_list& operator=(const intrusive_list&) = delete;

  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] Node* front() const noexcept { return head_; }
  [[nodiscard]] static Node* next(const Node& n) noexcept { return (n.*Links).next; }
  /// True if `n` is in this list. `n` must be in no other list of the same links.
  [[nodiscard]] bool contains(const Node& n) const noexcept {
    return (n.*Links).prev != nullptr || head_ == &n;
  }

  void push_back(Node& n) noexcept {
    auto& links = n.*Links;
    links.prev = tail_;
    links.next = nullptr;
    if (tail_ != nullptr)
      (tail_->*Links).next = &n;
    else
      head_ = &n;
    tail_ = &n;
    ++size_;
  }

  void erase(Node& n) noexcept {
    auto& links = n.*Links;
    if (links.prev != nullptr)
      (links.prev->*Links).next = links.next;
    else
      head_ = links.next;
    if (links.next != nullptr)
      (links.next->*Links).prev = links.prev;
    else
      tail_ = links.prev;
    links = {};
    --size_;
  }

  /// Empties the list and returns its first node. The nodes keep their links, so that the caller
  /// can walk them with next(): it must reset each node's links before linking it again, or
  /// asking any list whether it contains it.
  [[nodiscard]] Node* release_all() noexcept {
    Node* first = head_;
    head_ = tail_ = nullptr;
    size_ = 0;
    return first;
  }

private:
  Node* head_ = nullptr;
  Node* tail_ = nullptr;
  std::size_t size_ = 0;
};

} // namespace taskyard::detail

#endif // TASKYARD_DETAIL_INTRUSIVE_LIST_HPP
