# package.install (fixture for the other package tests): installs taskyard from the build tree
# into a fresh prefix, and checks what was installed.
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

file(REMOVE_RECURSE "${PREFIX}")
run(COMMAND "${CMAKE_COMMAND}" --install "${BINARY_DIR}" --prefix "${PREFIX}")

# Every header of the source tree is installed: a header missing from the target's FILE_SET in
# CMakeLists.txt shows here.
file(GLOB_RECURSE headers RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/include/*.hpp")
foreach(file IN LISTS headers ITEMS
    share/cmake/taskyard/taskyardConfig.cmake
    share/cmake/taskyard/taskyardConfigVersion.cmake
    share/cmake/taskyard/taskyardTargets.cmake
    share/pkgconfig/taskyard.pc
    share/doc/taskyard/LICENSE)
  if(NOT EXISTS "${PREFIX}/${file}")
    message(FATAL_ERROR "not installed: ${file}")
  endif()
endforeach()

# Relocatable: no file names the prefix it was installed to.
file(GLOB_RECURSE installed RELATIVE "${PREFIX}" "${PREFIX}/share/*")
foreach(file IN LISTS installed)
  file(READ "${PREFIX}/${file}" content)
  string(FIND "${content}" "${PREFIX}" at)
  if(NOT at EQUAL -1)
    message(FATAL_ERROR "${file} names the install prefix ${PREFIX}: not relocatable")
  endif()
endforeach()
file(READ "${PREFIX}/share/pkgconfig/taskyard.pc" pc)
if(NOT pc MATCHES "(^|\n)prefix=\\\${pcfiledir}/")
  message(FATAL_ERROR "taskyard.pc does not find its prefix from its own place:\n${pc}")
endif()
message(STATUS "installed into ${PREFIX}")
