#pragma once
// The runtime's CPU tensor memory. When the runtime loads, it puts a counting allocator in front of c10's
// CPU allocator and, under glibc, keeps the blocks that tensors free inside the process (below), unless
// the user set glibc's malloc tunables, which then win.
#include <cstdint>

namespace pippy {

// Bytes of the CPU tensors this process holds: one atomic read. Measured traces sample it after every
// compute action of a process that hosts one rank.
std::uint64_t cpu_tensor_bytes();

// Bytes of heap this process has in use (glibc's mallinfo2: allocated chunks plus mmapped blocks). 0
// where that is not available. It walks every free chunk of every arena: 15-25 us in a training process,
// too slow to take after each action.
std::uint64_t heap_bytes_in_use();

// Whether freed tensor memory stays in the process: glibc asked to serve blocks up to 32 MiB from its
// arenas (not mmap) and to keep up to 1 GiB free at an arena's top. By default glibc gives blocks of
// 128 KiB and more back to the kernel as they are freed, and every step then faults its activations and
// gradients in again, zeroed: MyNetwork's step on 2 processes is 0.90x as long with it (200 steps,
// bench/RESULTS-runtime.md). What is kept is at most the peak, which every step reaches again. False
// without glibc, or where MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES' glibc.malloc
// settings are the user's choice.
bool keeps_freed_memory();

} // namespace pippy
