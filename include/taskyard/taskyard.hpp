//
// taskyard/taskyard.hpp
// ~~~~~~~~~~~~~~~~~~~~~
//
// The umbrella header: everything a user of taskyard needs.
//
// Distributed under the Boost Software License, Version 1.0. (See LICENSE.)
//

#ifndef TASKYARD_TASKYARD_HPP
#define TASKYARD_TASKYARD_HPP

#include <taskyard/app.hpp>
#include <taskyard/config.hpp>
#include <taskyard/errors.hpp>
#include <taskyard/events.hpp>
#include <taskyard/inject.hpp>
#include <taskyard/registry.hpp>
#include <taskyard/run.hpp>
#include <taskyard/task.hpp>
#include <taskyard/version.hpp>

#endif // TASKYARD_TASKYARD_HPP
