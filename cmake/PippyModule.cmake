# pp_add_module(name SOURCES ... DEPS ...): one library per top-level folder, headers under
# <folder>/include/pippy/<folder>/, dependencies declared here and pointing one way.
include(GNUInstallDirs)
add_library(pippy_warnings INTERFACE)
target_compile_options(pippy_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow=local
  -Wnon-virtual-dtor -Wno-unused-parameter
  -Wno-missing-field-initializers) # designated initializers leave defaults on purpose
if(PIPPY_WERROR)
  target_compile_options(pippy_warnings INTERFACE -Werror)
endif()

# Each module is installed (library, headers) into the export set pippyTargets as pippy::<name>, which
# the top-level CMakeLists turns into the CMake package find_package(pippy). What a module uses PUBLIC must
# therefore be an exportable target (torch, not ${TORCH_LIBRARIES}) or wrapped in $<BUILD_INTERFACE:>.
function(pp_add_module name)
  cmake_parse_arguments(PP "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(pippy_${name} ${PP_SOURCES})
  add_library(pippy::${name} ALIAS pippy_${name})
  target_include_directories(pippy_${name} PUBLIC
    "$<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>" "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
  # Our headers are C++20: say so to whoever links the installed library.
  target_compile_features(pippy_${name} PUBLIC cxx_std_20)
  # pippy_warnings stays in this build (a static library's private links are exported as link-only).
  target_link_libraries(pippy_${name} PUBLIC ${PP_DEPS}
    PRIVATE "$<BUILD_INTERFACE:pippy_warnings>" ${PP_PRIVATE_DEPS})
  set_target_properties(pippy_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON EXPORT_NAME ${name})
  install(TARGETS pippy_${name} EXPORT pippyTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}/include/" DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()

# The exit code a test process ends with when what it needs is not on this machine (a GPU): CTest
# reports such a test as skipped, not passed. Tests get it as PIPPY_SKIP_EXIT_CODE.
set(PIPPY_SKIP_EXIT_CODE 77)

# pp_add_test(name SOURCES ... DEPS ... [LABELS ...] [PROPERTIES ...] [SKIPPABLE]): a Catch2 executable
# whose test cases are registered with CTest (with the extra test PROPERTIES, e.g. a fixture); SKIPPABLE
# ones may end with PIPPY_SKIP_EXIT_CODE to be reported as skipped.
function(pp_add_test name)
  cmake_parse_arguments(PP "SKIPPABLE" "" "SOURCES;DEPS;LABELS;PROPERTIES" ${ARGN})
  add_executable(${name} ${PP_SOURCES})
  target_link_libraries(${name} PRIVATE pippy_test_main ${PP_DEPS} pippy_warnings)
  set(props LABELS "${PP_LABELS}" ${PP_PROPERTIES})
  if(PP_SKIPPABLE)
    target_compile_definitions(${name} PRIVATE PIPPY_SKIP_EXIT_CODE=${PIPPY_SKIP_EXIT_CODE})
    list(APPEND props SKIP_RETURN_CODE ${PIPPY_SKIP_EXIT_CODE})
  endif()
  # --warn NoTests: a CTest entry whose name matches no test case fails instead of passing empty (CTest
  # splits names at ';', so such a name became two entries that ran nothing).
  catch_discover_tests(${name} EXTRA_ARGS --warn NoTests PROPERTIES ${props}
    WORKING_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}")
endfunction()

# pp_add_cli_test(name EXIT status [OUTPUT re] [STDOUT re] [STDERR re] [NOT_OUTPUT re] [LABELS ...]
#                 [PROPERTIES ...] COMMAND program args...): a command-line test that checks the exit status
# and the output, both (tests/support/expect_run.cmake). Regular expressions are CMake's, without ';'.
get_filename_component(PIPPY_EXPECT_RUN "${CMAKE_CURRENT_LIST_DIR}/../tests/support/expect_run.cmake" ABSOLUTE)
function(pp_add_cli_test name)
  cmake_parse_arguments(PP "" "EXIT;OUTPUT;STDOUT;STDERR;NOT_OUTPUT" "LABELS;PROPERTIES;COMMAND" ${ARGN})
  if(NOT DEFINED PP_EXIT OR NOT PP_COMMAND)
    message(FATAL_ERROR "pp_add_cli_test(${name}): EXIT and COMMAND are required")
  endif()
  set(defs "-DEXIT=${PP_EXIT}")
  foreach(k OUTPUT STDOUT STDERR NOT_OUTPUT)
    if(DEFINED PP_${k})
      list(APPEND defs "-D${k}=${PP_${k}}")
    endif()
  endforeach()
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} ${defs} -P "${PIPPY_EXPECT_RUN}" -- ${PP_COMMAND})
  set_tests_properties(${name} PROPERTIES LABELS "${PP_LABELS}" ${PP_PROPERTIES})
endfunction()
