#include <catch2/catch.hpp>
#include "pippy/simulator/cost_model.hpp"
