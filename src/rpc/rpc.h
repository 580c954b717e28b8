// The data-plane RPC protocol on the cluster TCP port, on top of frame_codec.h (DESIGN.md §4.2).
//
//   connection := hello(client) hello(server) frame*      one per client node and server node
//   client -> server:
//     request(id, method, body)      a call; ids strictly increase per connection
//     chunk(id, part)  before request(id): a part of a request body larger than one chunk; the
//                      server concatenates parts, then the request's own body
//     chunk(id, credit:u64be)  after request(id): the client consumed `credit` more bytes of the
//                      response stream; the server keeps sent - credited <= kRpcStreamWindowBytes
//     error(id)        cancel (deadline passed, or the caller lost interest)
//   server -> client:
//     response(id, status, body)          a whole answer (body <= kRpcChunkBytes)
//     chunk(id, part)* end(id, status, message)   a streamed answer (large or server-streaming);
//                      at any point the chunks' bytes minus the credits the client sent are at
//                      most kRpcStreamWindowBytes (the client checks it)
//     error(id, status, message)          failure before any chunk (unknown method, ...)
//   status: 0 = OK, else an oklog::Code value; the body of a failure is its message.
//
// Any frame that does not fit this grammar (a bad hello, a wrong cluster or version, an oversize
// frame or message, an undecodable envelope, a reused id, response chunks past the window)
// closes that connection and is counted in oklog_rpc_streams_dropped_total{reason}; the node
// keeps serving every other connection. There is one connection per pair of nodes, so a peer's
// violation on one call ends its own calls only (Unavailable), never another peer's.
// The gossip push/pull (method "gossip") is a client of the same grammar with one request per
// connection. Method "rpc.ping" (empty body, empty OK answer) is every server's own: a client
// asks it on a connection that showed no life while a call timed out, and closes the connection
// when the ping times out too (any answer, even an error from an older server, is life).
#pragma once

#include <cstddef>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "rpc/frame_codec.h"

namespace oklog::rpc {

using Duration = std::chrono::milliseconds;  // deadlines, timeouts and backoffs

inline constexpr size_t kRpcChunkBytes = 1u << 20;         // largest body part in one frame
inline constexpr size_t kRpcMaxMessageBytes = 64u << 20;   // largest whole request or response
inline constexpr size_t kRpcStreamWindowBytes = 4u << 20;  // response bytes in flight per call
inline constexpr std::string_view kPingMethod = "rpc.ping";
static_assert(kRpcChunkBytes + 64 < kMaxFrameBytes, "a chunk and its envelope fit in a frame");
static_assert(kRpcStreamWindowBytes >= 2 * kRpcChunkBytes, "the window holds at least two chunks");
static_assert(kRpcMaxMessageBytes >= kRpcStreamWindowBytes, "a message can fill a window");

// The status codes on the wire: a table of their own, so that reordering or extending
// common/status.h's Code can never change what a number means between two versions. ONLY
// APPEND: a number, once sent, keeps its meaning; an unknown number from a newer peer decodes
// as IOError naming it.
enum class WireCode : uint32_t {
  kOk = 0,
  kInvalidArgument = 1,
  kNotFound = 2,
  kCorruption = 3,
  kIOError = 4,
  kUnavailable = 5,
  kTimedOut = 6,
  kResourceExhausted = 7,
  kAlreadyExists = 8,
  kCancelled = 9,
};

// Status <-> wire status code and message.
uint32_t WireStatus(const Status& s);
Status StatusFromWire(uint32_t code, std::string_view message);

std::string EncodeCredit(uint64_t bytes);
// Returns Corruption for a body that is not 8 bytes.
Result<uint64_t> DecodeCredit(std::string_view body);

}  // namespace oklog::rpc
