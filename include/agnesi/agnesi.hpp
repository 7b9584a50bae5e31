// Agnesi: symbolic tensor mathematics. Including this header gives the whole public API.
#pragma once

#include "agnesi/context.hpp"
#include "agnesi/diff.hpp"
#include "agnesi/error.hpp"
#include "agnesi/evaluate.hpp"
#include "agnesi/expr.hpp"
#include "agnesi/jit.hpp"
#include "agnesi/node.hpp"
#include "agnesi/number.hpp"
#include "agnesi/op.hpp"
#include "agnesi/parse.hpp"
#include "agnesi/print.hpp"
#include "agnesi/simplify.hpp"
#include "agnesi/tensor.hpp"
#include "agnesi/traverse.hpp"
#include "agnesi/types.hpp"
#include "agnesi/vjp.hpp"
