// The runtime's CPU tensor memory: counted by its allocator, and kept in the process once freed.
#include <catch2/catch.hpp>

#include <malloc.h>

#include <vector>

#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include "pippy/runtime/cpu_memory.hpp"

using namespace pippy;

TEST_CASE("cpu_tensor_bytes counts the bytes of each CPU tensor while it lives, and c10's raw interface still works",
          "[runtime][profile]") {
  // Other threads of this test process do not allocate tensors meanwhile.
  const std::uint64_t before = cpu_tensor_bytes();
  {
    const torch::Tensor a = torch::empty({1000}, torch::kFloat32);
    CHECK(cpu_tensor_bytes() == before + 4000);
    {
      const torch::Tensor b = torch::ones({3, 5}, torch::kFloat64);
      CHECK(cpu_tensor_bytes() == before + 4000 + 120);
      CHECK(b.sum().item<double>() == 15.0);
    }
    CHECK(cpu_tensor_bytes() == before + 4000);
    CHECK(reinterpret_cast<std::uintptr_t>(a.data_ptr()) % 64 == 0);
  }
  CHECK(cpu_tensor_bytes() == before);
  c10::Allocator* cpu = c10::GetCPUAllocator();
  void* raw = cpu->raw_allocate(256);
  CHECK(cpu_tensor_bytes() == before + 256);
  cpu->raw_deallocate(raw);
  CHECK(cpu_tensor_bytes() == before);
}

TEST_CASE("Freed tensor memory stays in the process: blocks up to 32 MiB come from glibc's arenas, which keep them",
          "[runtime][cpu_memory]") {
  REQUIRE(keeps_freed_memory()); // false only where MALLOC_*_ or GLIBC_TUNABLES' malloc settings are set
  // Four tensors of 24 MiB made, written and freed on this thread (glibc's main arena). By default glibc
  // trims an arena's free top beyond twice its mmap threshold (64 MiB at most) and gives the pages back to
  // the kernel; the next step that makes them faults every page in again, zeroed.
  constexpr std::int64_t floats = 6 << 20, tensors = 4;
  constexpr std::size_t bytes = static_cast<std::size_t>(floats * tensors) * sizeof(float);
  const std::size_t mapped_before = mallinfo2().hblkhd;
  {
    std::vector<torch::Tensor> made;
    for (std::int64_t k = 0; k < tensors; ++k)
      made.push_back(torch::full({floats}, static_cast<float>(k), torch::kFloat32));
    CHECK(made.back()[floats - 1].item<float>() == static_cast<float>(tensors - 1));
    CHECK(mallinfo2().hblkhd == mapped_before); // from the arena, none mapped on its own
  }
  CHECK(mallinfo2().fordblks >= bytes); // freed, and kept in the arena
}
