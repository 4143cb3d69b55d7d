# package.find_package: the consumer finds the installed taskyard with
# find_package(taskyard 0.1 CONFIG REQUIRED), builds, and prints its task's result and the version.
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

make_consumer("${WORK_DIR}/src" "${CONSUMER_DIR}/find_package/CMakeLists.txt")
cmake_consumer("${WORK_DIR}/src" "${WORK_DIR}/build" ARGS "-DCMAKE_PREFIX_PATH=${PREFIX}")

# The taskyard found is the one just installed, not one installed elsewhere on the machine.
file(STRINGS "${WORK_DIR}/build/CMakeCache.txt" found REGEX "^taskyard_DIR:")
if(NOT found STREQUAL "taskyard_DIR:PATH=${PREFIX}/share/cmake/taskyard")
  message(FATAL_ERROR "found another taskyard: ${found}")
endif()
check_consumer_runs("${WORK_DIR}/build/consumer")
