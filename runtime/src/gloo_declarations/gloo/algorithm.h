#pragma once
// Read only by ProcessGroupGloo.hpp, which needs nothing from it (see ../README.md).
