// Must not compile: segments may not include query (docs/ARCHITECTURE.md; the compactor test
// once did). Built only by the test build_hides_* in tests/CMakeLists.txt, which expects "header
// not found".
#include "rpc/rpc.h"                // allowed: segments -> rpc
#include "segments/store_log.h"     // its own headers
#include "query/query_executor.h"  // not allowed
