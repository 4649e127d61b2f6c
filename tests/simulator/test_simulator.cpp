#include <catch2/catch.hpp>
#include "sim_helpers.hpp"
