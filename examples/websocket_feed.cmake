# The websocket feed server (websocket_feed.cpp: the seed's websocket snippet on Boost.Beast) and
# its end-to-end tests (label e2e), which run the server as a child process on a free loopback port:
#   e2e.websocket_feed.beast   50 Beast websocket clients, 3 dispatches, messages both ways, clients
#                              leaving politely and abruptly, then a SIGTERM with connections open
#   e2e.websocket_feed.python  a third-party client: Debian's python3-websockets, then a SIGINT
# Included from examples/CMakeLists.txt.

add_executable(example_websocket_feed ${CMAKE_CURRENT_LIST_DIR}/websocket_feed.cpp)
target_link_libraries(example_websocket_feed PRIVATE taskyard::taskyard taskyard_dev_flags)

set(taskyard_e2e_dir "${PROJECT_SOURCE_DIR}/tests/e2e")

add_executable(e2e_websocket_feed ${taskyard_e2e_dir}/websocket_feed_e2e.cpp)
target_link_libraries(e2e_websocket_feed PRIVATE taskyard::taskyard taskyard_dev_flags)
add_test(NAME e2e.websocket_feed.beast
  COMMAND e2e_websocket_feed $<TARGET_FILE:example_websocket_feed>)

# The client runs with Debian's /usr/bin/python3 (the python3 first on PATH may be another
# interpreter, without Debian's packages); TASKYARD_PYTHON overrides it.
add_test(NAME e2e.websocket_feed.python
  COMMAND bash ${taskyard_e2e_dir}/python_client.sh
    $<TARGET_FILE:example_websocket_feed> ${taskyard_e2e_dir}/feed_client.py)

set_tests_properties(e2e.websocket_feed.beast e2e.websocket_feed.python PROPERTIES
  LABELS e2e
  TIMEOUT 120)

# The server under valgrind memcheck, with the Python client (label valgrind, as for the other
# examples: see examples/CMakeLists.txt).
if(TASKYARD_VALGRIND)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    target_compile_options(example_websocket_feed PRIVATE -gdwarf-4) # valgrind 3.19 and DWARF 5
  endif()
  add_test(NAME valgrind.websocket_feed
    COMMAND bash ${taskyard_e2e_dir}/python_client.sh
      $<TARGET_FILE:example_websocket_feed> ${taskyard_e2e_dir}/feed_client.py
      ${TASKYARD_VALGRIND_EXECUTABLE} --quiet --tool=memcheck --error-exitcode=99 --leak-check=full
      --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect)
  set_tests_properties(valgrind.websocket_feed PROPERTIES LABELS valgrind TIMEOUT 180)
endif()
