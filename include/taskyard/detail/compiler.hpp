//
// taskyard/detail/compiler.hpp
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
//
// Inlining attributes for the few places where inlining decides the cost: the registry's lookup
// (registry::find) and the slow paths of small_mutex, kept out of the lookup. With a compiler
// that does not know GCC's attributes they expand to nothing, or to `inline`.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_DETAIL_COMPILER_HPP
#define TASKYARD_DETAIL_COMPILER_HPP

#if defined(__GNUC__) || defined(__clang__)
#define TASKYARD_DETAIL_ALWAYS_INLINE [[gnu::always_inline]] inline
#define TASKYARD_DETAIL_FLATTEN [[gnu::flatten]] // everything it calls, inlined into it
#define TASKYARD_DETAIL_NOINLINE [[gnu::noinline]]
#else
#define TASKYARD_DETAIL_ALWAYS_INLINE inline
#define TASKYARD_DETAIL_FLATTEN
#define TASKYARD_DETAIL_NOINLINE
#endif

#endif // TASKYARD_DETAIL_COMPILER_HPP
