#pragma once
// ProcessGroupGloo.hpp holds these only through shared_ptr / unique_ptr (see ../../README.md).
namespace gloo::transport {
class Device;
class UnboundBuffer;
} // namespace gloo::transport
