# Install rules: headers, the exported target, and a package configuration for find_package.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(TASKYARD_CMAKE_DIR "${CMAKE_INSTALL_DATADIR}/cmake/taskyard")

install(TARGETS taskyard EXPORT taskyardTargets FILE_SET HEADERS)
install(EXPORT taskyardTargets NAMESPACE taskyard:: DESTINATION "${TASKYARD_CMAKE_DIR}")

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/taskyardConfig.cmake.in"
  "${CMAKE_CURRENT_BINARY_DIR}/taskyardConfig.cmake"
  INSTALL_DESTINATION "${TASKYARD_CMAKE_DIR}")
write_basic_package_version_file(
  "${CMAKE_CURRENT_BINARY_DIR}/taskyardConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion
  ARCH_INDEPENDENT)
install(FILES
  "${CMAKE_CURRENT_BINARY_DIR}/taskyardConfig.cmake"
  "${CMAKE_CURRENT_BINARY_DIR}/taskyardConfigVersion.cmake"
  DESTINATION "${TASKYARD_CMAKE_DIR}")
