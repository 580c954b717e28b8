// Must not compile: rpc depends on common only (docs/ARCHITECTURE.md). Built only by the test
// build_hides_* in tests/CMakeLists.txt, which expects "header not found".
#include "common/status.h"     // allowed: rpc -> common
#include "rpc/rpc.h"           // its own headers
#include "gossip/peer_view.h"  // not allowed
