# The CMake package: `cmake --install <build> --prefix <dir>` installs the libraries (pp_add_module), their
# headers, the pippy, pippy-split and pippy-train executables, and <dir>/lib/cmake/pippy/, so that another
# project can `find_package(pippy)` and `target_link_libraries(app pippy::runtime)`. tests/package builds
# such a project against an install.
include(CMakePackageConfigHelpers)

set(PIPPY_PACKAGE_MODULES "")
foreach(module core traces actors simulator compiler runtime gpu gui)
  if(TARGET pippy_${module})
    list(APPEND PIPPY_PACKAGE_MODULES ${module})
  endif()
endforeach()
# What pippyConfig.cmake finds before it imports our targets: Torch where the real backend was built (with
# this build's Torch_DIR as a default hint), CUDA and NCCL for gpu, Qt6 for gui.
set(PIPPY_PACKAGE_TORCH OFF)
if(TARGET pippy_compiler OR TARGET pippy_runtime)
  set(PIPPY_PACKAGE_TORCH ON)
endif()
set(PIPPY_PACKAGE_GPU OFF)
set(PIPPY_PACKAGE_NCCL_ROOT "")
if(TARGET pippy_gpu)
  set(PIPPY_PACKAGE_GPU ON)
  get_filename_component(PIPPY_PACKAGE_NCCL_ROOT "${NCCL_INCLUDE_DIR}" DIRECTORY)
endif()
set(PIPPY_PACKAGE_GUI OFF)
if(TARGET pippy_gui)
  set(PIPPY_PACKAGE_GUI ON)
endif()

set(pippy_cmake_dir "${CMAKE_INSTALL_LIBDIR}/cmake/pippy")
install(EXPORT pippyTargets NAMESPACE pippy:: DESTINATION "${pippy_cmake_dir}")
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/pippyConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/pippyConfig.cmake" INSTALL_DESTINATION "${pippy_cmake_dir}")
# 0.x: a minor version may break the API.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/pippyConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/pippyConfig.cmake" "${PROJECT_BINARY_DIR}/pippyConfigVersion.cmake"
              "${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake" "${PROJECT_SOURCE_DIR}/cmake/FindNCCL.cmake"
        DESTINATION "${pippy_cmake_dir}")
