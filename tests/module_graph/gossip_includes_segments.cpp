// Must not compile: gossip may not include segments (docs/ARCHITECTURE.md). Built only by the
// test build_hides_* in tests/CMakeLists.txt, which expects the compiler to say the header is
// not found: the build gives oklog_gossip no include root for "segments/".
#include "common/status.h"      // allowed: gossip -> common
#include "gossip/peer_view.h"   // its own headers
#include "segments/store_log.h"  // not allowed
