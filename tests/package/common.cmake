# Shared by the package tests, each a `cmake -P` script run by ctest (see tests/CMakeLists.txt).
# They build the consumer in tests/consumer/ as a user's project would, with the compiler of the
# main build. Variables from ctest (-D): SOURCE_DIR and BINARY_DIR (taskyard's trees), WORK_DIR
# (this test's own directory, made anew), PREFIX (where package.install installs taskyard),
# EXPECTED_VERSION, CXX_COMPILER, CXX_LAUNCHER, GENERATOR, MAKE_PROGRAM, Boost_DIR, PKG_CONFIG.

foreach(var IN ITEMS SOURCE_DIR BINARY_DIR WORK_DIR PREFIX EXPECTED_VERSION CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "package test: ${var} is not set")
  endif()
endforeach()

set(CONSUMER_DIR "${SOURCE_DIR}/tests/consumer")
set(EXPECTED_OUTPUT "taskyard ${EXPECTED_VERSION}: 42\n")

# Runs a command, echoing it; fails the test if it fails, unless EXPECT_FAILURE is given, in which
# case it fails the test if the command succeeds. OUTPUT <var> receives stdout and stderr.
function(run)
  cmake_parse_arguments(PARSE_ARGV 0 arg "EXPECT_FAILURE" "WORKING_DIRECTORY;OUTPUT" "COMMAND")
  if(NOT arg_WORKING_DIRECTORY)
    set(arg_WORKING_DIRECTORY "${WORK_DIR}")
  endif()
  list(JOIN arg_COMMAND " " shown)
  message(STATUS "$ ${shown}")
  execute_process(COMMAND ${arg_COMMAND}
    WORKING_DIRECTORY "${arg_WORKING_DIRECTORY}"
    RESULT_VARIABLE result
    OUTPUT_VARIABLE output
    ERROR_VARIABLE output)
  if(arg_EXPECT_FAILURE)
    if(result EQUAL 0)
      message(FATAL_ERROR "succeeded, but should have failed:\n${output}")
    endif()
  elseif(NOT result EQUAL 0)
    message(FATAL_ERROR "failed (${result}):\n${output}")
  endif()
  if(arg_OUTPUT)
    set(${arg_OUTPUT} "${output}" PARENT_SCOPE)
  endif()
endfunction()

# A consumer project in <dir>: tests/consumer/main.cpp plus the given CMakeLists.txt (or script).
function(make_consumer dir)
  file(MAKE_DIRECTORY "${dir}")
  file(COPY "${CONSUMER_DIR}/main.cpp" ${ARGN} DESTINATION "${dir}")
endfunction()

# Configures (and unless CONFIGURE_ONLY, builds) the consumer project in <src> into <build>, with the
# main build's generator, compiler and compiler launcher.
function(cmake_consumer src build)
  cmake_parse_arguments(PARSE_ARGV 2 arg "CONFIGURE_ONLY;EXPECT_FAILURE" "OUTPUT" "ARGS")
  set(args -G "${GENERATOR}" -S "${src}" -B "${build}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
  if(MAKE_PROGRAM)
    list(APPEND args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
  endif()
  if(CXX_LAUNCHER)
    list(APPEND args "-DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_LAUNCHER}")
  endif()
  if(Boost_DIR)
    list(APPEND args "-DBoost_DIR=${Boost_DIR}")
  endif()
  if(arg_EXPECT_FAILURE)
    run(COMMAND "${CMAKE_COMMAND}" ${args} ${arg_ARGS} EXPECT_FAILURE OUTPUT output)
  else()
    run(COMMAND "${CMAKE_COMMAND}" ${args} ${arg_ARGS} OUTPUT output)
  endif()
  if(arg_OUTPUT)
    set(${arg_OUTPUT} "${output}" PARENT_SCOPE)
  endif()
  if(NOT arg_CONFIGURE_ONLY AND NOT arg_EXPECT_FAILURE)
    run(COMMAND "${CMAKE_COMMAND}" --build "${build}")
  endif()
endfunction()

# Runs the consumer program and checks that it printed exactly the expected line.
function(check_consumer_runs exe)
  run(COMMAND "${exe}" OUTPUT output)
  if(NOT output STREQUAL EXPECTED_OUTPUT)
    message(FATAL_ERROR "the consumer printed\n${output}\ninstead of\n${EXPECTED_OUTPUT}")
  endif()
  message(STATUS "the consumer printed: ${output}")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
