# Install rules: the headers, the exported target, a package configuration for find_package, and a
# pkg-config file. Everything goes to arch-independent places (share/): taskyard is header-only.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(TASKYARD_CMAKE_DIR "${CMAKE_INSTALL_DATADIR}/cmake/taskyard")
set(TASKYARD_PKGCONFIG_DIR "${CMAKE_INSTALL_DATADIR}/pkgconfig")

install(TARGETS taskyard EXPORT taskyardTargets FILE_SET HEADERS)
install(EXPORT taskyardTargets NAMESPACE taskyard:: DESTINATION "${TASKYARD_CMAKE_DIR}")

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/taskyardConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/taskyardConfig.cmake"
  INSTALL_DESTINATION "${TASKYARD_CMAKE_DIR}")
# SameMinorVersion: while taskyard is 0.y, a new minor version may break the API, so 0.1.x
# satisfies a request for 0.1 or 0.1.z (z <= x) and nothing else. See the README's compatibility
# policy.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/taskyardConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion
  ARCH_INDEPENDENT)
install(FILES
  "${PROJECT_BINARY_DIR}/taskyardConfig.cmake"
  "${PROJECT_BINARY_DIR}/taskyardConfigVersion.cmake"
  DESTINATION "${TASKYARD_CMAKE_DIR}")

# taskyard.pc is relocatable: its prefix is found from where the file is (${pcfiledir}), so the
# installed tree may be moved, or installed with `cmake --install --prefix`, after configuring.
function(taskyard_pc_path out dir)
  cmake_path(IS_ABSOLUTE dir absolute)
  if(absolute)
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "\${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()
cmake_path(IS_ABSOLUTE TASKYARD_PKGCONFIG_DIR pkgconfig_dir_is_absolute)
if(pkgconfig_dir_is_absolute)
  set(TASKYARD_PC_PREFIX "${CMAKE_INSTALL_PREFIX}") # an absolute datadir pins the prefix anyway
else()
  file(RELATIVE_PATH pc_to_prefix "/prefix/${TASKYARD_PKGCONFIG_DIR}" "/prefix")
  string(REGEX REPLACE "/$" "" pc_to_prefix "${pc_to_prefix}")
  set(TASKYARD_PC_PREFIX "\${pcfiledir}/${pc_to_prefix}")
endif()
taskyard_pc_path(TASKYARD_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
# Debian's Boost ships no .pc file, so Boost cannot be a Requires: its include directory is added
# to Cflags unless the compiler searches it already.
set(TASKYARD_PC_BOOST_CFLAGS "")
foreach(dir IN LISTS Boost_INCLUDE_DIRS)
  if(NOT dir IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
    string(APPEND TASKYARD_PC_BOOST_CFLAGS " -I${dir}")
  endif()
endforeach()
configure_file("${CMAKE_CURRENT_LIST_DIR}/taskyard.pc.in" "${PROJECT_BINARY_DIR}/taskyard.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/taskyard.pc" DESTINATION "${TASKYARD_PKGCONFIG_DIR}")

install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/taskyard")
