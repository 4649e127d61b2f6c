# The real backend's benchmark (bench/runtime_bench.cpp, driver bench/runtime_bench.sh, numbers in
# bench/RESULTS-runtime.md). `ctest -L bench` runs a short smoke of the overhead part.
if(PIPPY_BUILD_BENCH)
  add_executable(runtime_bench "${PROJECT_SOURCE_DIR}/bench/runtime_bench.cpp")
  target_link_libraries(runtime_bench PRIVATE pippy::runtime pippy_warnings)
  pp_use_torch_pch(runtime_bench)
  if(PIPPY_BUILD_TESTS)
    add_test(NAME runtime_bench_smoke COMMAND runtime_bench --steps 3)
    set_tests_properties(runtime_bench_smoke PROPERTIES LABELS bench TIMEOUT 120)
  endif()
endif()
