# package.add_subdirectory: taskyard's source tree sits in the consumer's external/taskyard (a
# symbolic link here) and is added with add_subdirectory. Its tests and examples are not built, and
# installing the consumer installs taskyard too.
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

make_consumer("${WORK_DIR}/src" "${CONSUMER_DIR}/add_subdirectory/CMakeLists.txt")
file(MAKE_DIRECTORY "${WORK_DIR}/src/external")
file(CREATE_LINK "${SOURCE_DIR}" "${WORK_DIR}/src/external/taskyard" SYMBOLIC)
cmake_consumer("${WORK_DIR}/src" "${WORK_DIR}/build")
check_consumer_runs("${WORK_DIR}/build/consumer")

foreach(dir IN ITEMS tests examples)
  if(EXISTS "${WORK_DIR}/build/external/taskyard/${dir}")
    message(FATAL_ERROR "taskyard's ${dir} were configured although taskyard is a subproject")
  endif()
endforeach()

run(COMMAND "${CMAKE_COMMAND}" --install "${WORK_DIR}/build" --prefix "${WORK_DIR}/install")
foreach(file IN ITEMS include/taskyard/taskyard.hpp share/cmake/taskyard/taskyardConfig.cmake
                      share/pkgconfig/taskyard.pc)
  if(NOT EXISTS "${WORK_DIR}/install/${file}")
    message(FATAL_ERROR "installing the consumer did not install taskyard's ${file}")
  endif()
endforeach()
