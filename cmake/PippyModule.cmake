# pp_add_module(name SOURCES ... DEPS ...): one library per top-level folder, headers under
# <folder>/include/pippy/<folder>/, dependencies declared here and pointing one way.
add_library(pippy_warnings INTERFACE)
target_compile_options(pippy_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow=local
  -Wnon-virtual-dtor -Wno-unused-parameter
  -Wno-missing-field-initializers) # designated initializers leave defaults on purpose
if(PIPPY_WERROR)
  target_compile_options(pippy_warnings INTERFACE -Werror)
endif()

function(pp_add_module name)
  cmake_parse_arguments(PP "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(pippy_${name} ${PP_SOURCES})
  add_library(pippy::${name} ALIAS pippy_${name})
  target_include_directories(pippy_${name} PUBLIC "${CMAKE_CURRENT_SOURCE_DIR}/include")
  target_link_libraries(pippy_${name} PUBLIC ${PP_DEPS} PRIVATE pippy_warnings ${PP_PRIVATE_DEPS})
  set_target_properties(pippy_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# pp_add_test(name SOURCES ... DEPS ...): a Catch2 executable whose test cases are registered with CTest.
function(pp_add_test name)
  cmake_parse_arguments(PP "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${PP_SOURCES})
  target_link_libraries(${name} PRIVATE pippy_test_main ${PP_DEPS} pippy_warnings)
  catch_discover_tests(${name} PROPERTIES LABELS "${PP_LABELS}"
    WORKING_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}")
endfunction()
