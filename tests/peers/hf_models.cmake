# PiPPy's example models from transformers (BERT masked LM, GPT-2, T5 encoder-decoder, LLaMA), traced to
# TorchScript by hf_models.py, split by our compiler and trained by pippy-train on 2 and 4 processes:
# the losses must equal the unsplit run's and the eager Python model's (hf_models.sh).
# Included from tests/peers/CMakeLists.txt.
if(NOT TARGET pippy-train OR NOT PIPPY_PYTHON)
  return()
endif()

set(pp_hf_models_sh "${CMAKE_CURRENT_LIST_DIR}/hf_models.sh")

# peers_hf_MODEL_NAME: NPROC processes, SCHEDULE, then hf_models.sh's --varlen or --eval and pippy-train's
# options.
function(pp_hf_models_test model name nproc schedule)
  add_test(NAME peers_hf_${model}_${name}
    COMMAND "${pp_hf_models_sh}" $<TARGET_FILE:pippy> $<TARGET_FILE:pippy-train>
            "${PIPPY_PYTHON}" ${model} ${nproc} ${schedule} ${ARGN})
  set_tests_properties(peers_hf_${model}_${name} PROPERTIES LABELS peers TIMEOUT 180)
endfunction()

# GPT-2: its embedding and LM head are one tensor (replicated: gradients summed; or sent forward).
pp_hf_models_test(gpt2 2proc_1f1b 2 1f1b)
pp_hf_models_test(gpt2 4proc_1f1b_transmit 4 1f1b --tied transmit)
# 4 stages on 2 ranks (V-shaped), split at the blocks by name.
pp_hf_models_test(gpt2 2proc_zbv 2 zbv
  --split-at transformer.h.1=begin --split-at transformer.h.2=begin --split-at transformer.h.3=begin)
pp_hf_models_test(gpt2 2proc_1f1b_varlen 2 1f1b --varlen)
# BERT: masked LM, the word embedding tied to the decoder.
pp_hf_models_test(bert 2proc_1f1b 2 1f1b)
pp_hf_models_test(bert 4proc_gpipe 4 gpipe)
# T5: two inputs, the encoder's output crosses the decoder's stages (cross-attention), four ties.
pp_hf_models_test(t5 2proc_1f1b 2 1f1b)
pp_hf_models_test(t5 4proc_1f1b 4 1f1b)
pp_hf_models_test(t5 4proc_gpipe_varlen 4 gpipe --varlen)
# LLaMA: rotary embeddings, grouped-query attention, RMSNorm.
pp_hf_models_test(llama 2proc_gpipe 2 gpipe)
pp_hf_models_test(llama 4proc_1f1b 4 1f1b)
# Pipelined inference (forwards only): each model's output equals the eager model's logits.
foreach(model IN ITEMS bert gpt2 t5 llama)
  pp_hf_models_test(${model} 2proc_eval 2 1f1b --eval)
  pp_hf_models_test(${model} 4proc_eval 4 gpipe --eval)
endforeach()
