# Training equivalence with torch.distributed.pipelining (equivalence.sh): every schedule both systems
# have, on 2 and 4 Gloo processes, MyNetwork and the GPT example; losses and final parameters to 1e-5.
# Included from tests/peers/CMakeLists.txt.
if(NOT TARGET mynetwork OR NOT TARGET gpt)
  return()
endif()
# Sizes small enough for 2 cores and deep enough for 2 stages per rank on 4 ranks: 8 stages that each hold
# parameters (MyNetwork: 17 modules, a Linear in every stage; torch.optim refuses a rank without any).
set(pp_equivalence_mynetwork --in-dim 64 --dims 64,64,64,64,64,64,64,64 --batch 32 --microbatches 8)
set(pp_equivalence_gpt --layers 8 --batch 16 --microbatches 8)
foreach(model IN ITEMS mynetwork gpt)
  foreach(schedule IN ITEMS gpipe 1f1b interleaved-1f1b looped-bfs interleaved-zb zbv dualpipev)
    foreach(nproc IN ITEMS 2 4)
      set(name peers_equivalence_${model}_${schedule}_${nproc}proc)
      set(stages_per_rank) # the looped multi-stage schedules with 2 stages per rank (the V-shaped have 2)
      if(schedule MATCHES "^(interleaved-1f1b|looped-bfs|interleaved-zb)$")
        set(stages_per_rank --stages-per-rank 2)
      endif()
      add_test(NAME ${name}
        COMMAND "${CMAKE_CURRENT_LIST_DIR}/equivalence.sh" $<TARGET_FILE:pippy> $<TARGET_FILE:${model}>
                "${PIPPY_PYTHON}" ${nproc} ${schedule} ${pp_equivalence_${model}} ${stages_per_rank})
      # 4 processes of two systems share 2 cores: keep them from running beside another such test.
      set_tests_properties(${name} PROPERTIES LABELS peers TIMEOUT 300 PROCESSORS ${nproc})
    endforeach()
  endforeach()
endforeach()
