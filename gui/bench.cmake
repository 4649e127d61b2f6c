# The viewer's scale bench (bench/view_bench.cpp); `ctest -L bench` runs a 100 k-action smoke of it,
# `view_bench` alone measures 1 M actions (see bench/RESULTS-view.md).
if(PIPPY_BUILD_BENCH)
  add_executable(view_bench "${PROJECT_SOURCE_DIR}/bench/view_bench.cpp")
  target_link_libraries(view_bench PRIVATE pippy::gui pippy_warnings)
  if(PIPPY_BUILD_TESTS)
    add_test(NAME view_bench_smoke COMMAND view_bench --actions 100000)
    set_tests_properties(view_bench_smoke PROPERTIES LABELS bench ENVIRONMENT QT_QPA_PLATFORM=offscreen TIMEOUT 300)
  endif()
endif()
