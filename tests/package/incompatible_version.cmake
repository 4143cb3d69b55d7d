# package.incompatible_version: the find_package consumer asking for a version that the installed
# 0.1.x is not compatible with (SameMinorVersion while 0.y: see the README) fails to configure,
# because of the version.
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

file(READ "${CONSUMER_DIR}/find_package/CMakeLists.txt" lists)
foreach(requested IN ITEMS 0.2 0.0 1.0)
  string(REPLACE "find_package(taskyard 0.1 " "find_package(taskyard ${requested} " changed
    "${lists}")
  if(changed STREQUAL lists)
    message(FATAL_ERROR "no find_package(taskyard 0.1 ...) in the consumer's CMakeLists.txt")
  endif()
  string(REPLACE "." "_" dir "${requested}")
  make_consumer("${WORK_DIR}/${dir}")
  file(WRITE "${WORK_DIR}/${dir}/CMakeLists.txt" "${changed}")
  cmake_consumer("${WORK_DIR}/${dir}" "${WORK_DIR}/${dir}/build" EXPECT_FAILURE OUTPUT output
    ARGS "-DCMAKE_PREFIX_PATH=${PREFIX}")
  string(REGEX REPLACE "[ \n]+" " " output "${output}") # CMake wraps its messages
  if(NOT output MATCHES "compatible with requested version \"${requested}\"" OR
     NOT output MATCHES "taskyardConfig.cmake, version: ${EXPECTED_VERSION}")
    message(FATAL_ERROR "asking for ${requested} failed for another reason:\n${output}")
  endif()
  message(STATUS "find_package(taskyard ${requested}) refused the installed ${EXPECTED_VERSION}")
endforeach()
