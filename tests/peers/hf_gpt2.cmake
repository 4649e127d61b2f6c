# Hugging Face's GPT-2 (transformers' GPT2LMHeadModel, random weights) traced to TorchScript by hf_gpt2.py,
# split by our compiler (tied embedding / LM head included) and trained by scripted-lm; its losses must
# equal the unsplit run's and the Python model's (hf_gpt2.sh). Included from tests/peers/CMakeLists.txt.
if(NOT TARGET scripted-lm OR NOT PIPPY_PYTHON)
  return()
endif()

set(pp_hf_gpt2_sh "${CMAKE_CURRENT_LIST_DIR}/hf_gpt2.sh")

# peers_hf_gpt2_NAME: NPROC processes, SCHEDULE, then scripted-lm's own options.
function(pp_hf_gpt2_test name nproc schedule)
  add_test(NAME peers_hf_gpt2_${name}
    COMMAND "${pp_hf_gpt2_sh}" $<TARGET_FILE:pippy> $<TARGET_FILE:scripted-lm>
            "${PIPPY_PYTHON}" ${nproc} ${schedule} ${ARGN})
  set_tests_properties(peers_hf_gpt2_${name} PROPERTIES LABELS peers TIMEOUT 120)
endfunction()

# 2 stages at the compiler's balanced split, the tie replicated (its gradients summed before the step).
pp_hf_gpt2_test(2proc_1f1b 2 1f1b)
# 4 stages, one per rank, split automatically (one block each), the tie sent forward from stage 0.
pp_hf_gpt2_test(4proc_1f1b_transmit 4 1f1b --tied transmit)
# 4 stages on 2 ranks (V-shaped: rank 0 holds stages 0 and 3, so both holders of the tie), split at transformer.h.K.
pp_hf_gpt2_test(2proc_zbv 2 zbv --split manual)
