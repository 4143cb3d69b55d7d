//
// taskyard/version.hpp
// ~~~~~~~~~~~~~~~~~~~~
//
// taskyard's version, written here and nowhere else: CMakeLists.txt reads these three numbers for
// project(VERSION), and from there come the installed taskyardConfigVersion.cmake and taskyard.pc.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_VERSION_HPP
#define TASKYARD_VERSION_HPP

/// Major version. While it is 0, a new minor version may break the API (see the README's
/// compatibility policy).
#define TASKYARD_VERSION_MAJOR 0

/// Minor version.
#define TASKYARD_VERSION_MINOR 1

/// Patch version: fixes only, never an API change.
#define TASKYARD_VERSION_PATCH 0

/// The whole version as one number, MAJOR * 10000 + MINOR * 100 + PATCH (0.1.0 is 100, 1.2.3 would
/// be 10203), for comparisons in `#if`.
#define TASKYARD_VERSION                                                                           \
  (TASKYARD_VERSION_MAJOR * 10000 + TASKYARD_VERSION_MINOR * 100 + TASKYARD_VERSION_PATCH)

#endif // TASKYARD_VERSION_HPP
