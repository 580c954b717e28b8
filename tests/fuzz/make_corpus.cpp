// Writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/) from the project's
// own encoders, so the seeds follow the formats as they change. Run by scripts/fuzz.sh
// (`make_corpus DIR`); the committed corpus is its output. Seeds are small and valid: the
// fuzzers find the invalid ones themselves.
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/ulid.h"
#include "gossip/node_meta.h"
#include "gossip/wire.h"
#include "query/query_messages.h"
#include "rpc/bulk_protocol.h"
#include "rpc/frame_codec.h"
#include "rpc/rpc.h"
#include "segments/holdings.h"
#include "segments/segment_file.h"
#include "segments/segment_messages.h"

using namespace oklog;

namespace {

std::string root;

void Seed(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::string dir = root + "/" + target;
  ::mkdir(root.c_str(), 0755);
  ::mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/" + name, std::ios::binary | std::ios::trunc) << bytes;
}

std::string Sel(uint8_t selector, const std::string& rest) { return std::string(1, static_cast<char>(selector)) + rest; }

std::string U64(uint64_t v) {
  std::string s;
  for (int shift = 56; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xFF));
  return s;
}

const Ulid kA = Ulid::FromParts(1700000000000, 0x1234, 1);
const Ulid kB = Ulid::FromParts(1700000060000, 0x1234, 99);

void Ulids() {
  Seed("ulid", "canonical", kA.ToString());
  Seed("ulid", "lower_alias", "01hgw2bbg0000000000000000l");
  Seed("ulid", "segment_name", SegmentName{kA, kB}.FileName());
  Seed("ulid", "bytes_run", std::string(reinterpret_cast<const char*>(kA.bytes().data()), 16) + U64(1000));
}

void Durations() {
  for (const char* d : {"300ms", "1.5h", "2h45m", "-1m30.25s", "168h", "1us", "0"}) Seed("duration", d, d);
}

void Addresses() {
  const std::string port = "\x1d\xe2";  // 7650
  int i = 0;
  for (const char* a : {"localhost", "10.0.0.1:7659", "[::1]:7650", "::1", "tcp://host:1", "tcp+dnsip://h", "udp6://[fe80::1%eth0]:9"})
    Seed("address", "a" + std::to_string(i++), port + a);
}

void Gossip() {
  const uint32_t hash = gossip::ClusterHash("fuzz");
  gossip::PacketBuilder b(hash);
  b.TryAdd(gossip::EncodeMessage(gossip::Ping{7, "b", "a"}));
  b.TryAdd(gossip::EncodeMessage(gossip::Alive{3, "a", "10.0.0.1:7659", "meta"}));
  b.TryAdd(gossip::EncodeMessage(gossip::Suspect{4, "c", "a"}));
  Seed("gossip_wire", "packet", Sel(0, std::move(b).Finish()));
  gossip::PacketBuilder b2(hash);
  b2.TryAdd(gossip::EncodeMessage(gossip::PingReq{8, "c", "10.0.0.3:7659"}));
  b2.TryAdd(gossip::EncodeMessage(gossip::Ack{8}));
  b2.TryAdd(gossip::EncodeMessage(gossip::Nack{9}));
  b2.TryAdd(gossip::EncodeMessage(gossip::Dead{5, "c", "c"}));
  Seed("gossip_wire", "packet2", Sel(0, std::move(b2).Finish()));
  gossip::Sync sync;
  sync.flags = gossip::Sync::kJoin;
  sync.digest = 42;
  sync.source = "a";
  sync.states = std::vector<gossip::SyncState>{{"a", "10.0.0.1:7659", 3, gossip::MemberState::kAlive, ""},
                                               {"b", "10.0.0.2:7659", 1, gossip::MemberState::kSuspect, "m"}};
  Seed("gossip_wire", "sync", Sel(1, gossip::EncodeMessage(sync)));
  gossip::NodeMeta meta;
  meta.roles = {"ingest", "store"};
  meta.api_addr = "10.0.0.1:7650";
  meta.ingest_fast_port = 7651;
  meta.version = "0.1.0";
  meta.full = {"store"};
  meta.load = {3, 1000, 5000};
  meta.shedding = "disk";
  Seed("gossip_wire", "meta", Sel(2, *gossip::EncodeNodeMeta(meta)));

  // Membership scripts: op len bytes.
  auto step = [](uint8_t op, const std::string& bytes) { return std::string{static_cast<char>(op), static_cast<char>(bytes.size())} + bytes; };
  const std::string alive_b = gossip::EncodeMessage(gossip::Alive{1, "b", "10.0.0.2:7659", ""});
  const std::string suspect_self = gossip::EncodeMessage(gossip::Suspect{1, "self", "b"});
  const std::string ping = gossip::EncodeMessage(gossip::Ping{1, "self", "b"});
  gossip::Sync s2;
  s2.flags = gossip::Sync::kReply;
  s2.source = "b";
  s2.states = std::vector<gossip::SyncState>{{"b", "10.0.0.2:7659", 1, gossip::MemberState::kAlive, ""},
                                             {"c", "10.0.0.3:7659", 2, gossip::MemberState::kAlive, ""}};
  Seed("membership", "join_suspect", step(0, alive_b) + step(0, ping) + step(2, std::string(40, 'x')) + step(0, suspect_self));
  Seed("membership", "sync", step(1, gossip::EncodeMessage(s2)) + step(2, std::string(200, 'x')) +
                                 step(4, gossip::EncodeMessage(gossip::Dead{2, "c", "b"})));
}

void Seal() {
  Seed("seal", "open_raw", Sel(0, U64(1700000000000) + std::string(40, 'x')));
  Seed("seal", "seal_open", Sel(1, U64(1700000000000) + U64(1700000001000) + "\x05" + "payload"));
  Seed("seal", "streams", Sel(2, std::string("\x03" "abc" "\x00" "\x05" "hello" "\xff", 12) + "raw frame bytes"));
  Seed("seal", "keyfile", Sel(3, "# comment\n\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"));
}

void Rpc() {
  auto frames = [](const std::vector<std::string>& payloads) {
    std::string s;
    for (const auto& p : payloads) s += rpc::EncodeFrame(p);
    return s;
  };
  const std::string hello = rpc::EncodeHello({rpc::kClusterProtocolVersion, "fuzz", "node-a"});
  const std::string req = rpc::EncodeEnvelope({rpc::Envelope::Kind::kRequest, 1, "segment.next", 0, EncodeSegmentNext(1 << 20)});
  const std::string chunk = rpc::EncodeEnvelope({rpc::Envelope::Kind::kChunk, 1, "", 0, rpc::EncodeCredit(65536)});
  const std::string end = rpc::EncodeEnvelope({rpc::Envelope::Kind::kEnd, 1, "", 0, ""});
  const std::string err = rpc::EncodeEnvelope({rpc::Envelope::Kind::kError, 2, "", 2, "no such method"});
  Seed("rpc_frame", "stream", std::string("\xff\x07") + frames({hello, req, chunk, end, err}));
  Seed("rpc_frame", "small_limit", std::string("\x01\x00") + frames({hello, std::string(100, 'x')}));

  Seed("bulk", "segment", rpc::EncodeBulkSegment(kA, "web GET /\nweb GET /favicon.ico\n") + rpc::EncodeBulkAck(kA));
  Seed("bulk", "error", rpc::EncodeBulkError("store tier unavailable"));
  Seed("bulk", "max_id", rpc::EncodeBulkSegment(Ulid::Max(), "t a\nt b\n"));

  Seed("rpc_messages", "segment_next", Sel(0, EncodeSegmentNext(64 << 20)));
  Seed("rpc_messages", "claimed", Sel(1, EncodeClaimedSegments({{kA.ToString(), 1000}, {kB.ToString(), 20}})));
  Seed("rpc_messages", "segment_id", Sel(2, EncodeSegmentId(kA.ToString())));
  Seed("rpc_messages", "segment_ids", Sel(3, EncodeSegmentIds({kA.ToString(), kB.ToString()})));
  Seed("rpc_messages", "stored", Sel(4, EncodeStoredRecords(12345)));
  QueryRunRequest q;
  q.from = kA;
  q.to = kB;
  q.q = "error";
  q.mode = MatchMode::kRegex;
  q.topics = {"web", "db"};
  q.limit = 10;
  q.asked = std::vector<std::string>{"store-1", "store-2"};
  Seed("rpc_messages", "query_run", Sel(5, EncodeQueryRunRequest(q)));
  QueryRunStats st;
  st.segments = 3;
  st.max_data_set_size = 1 << 20;
  st.missing_total = 1;
  st.missing = {MissingBatch{{kA, kB}, 10, {"store-3"}}};
  Seed("rpc_messages", "query_stats", Sel(6, EncodeQueryRunStats(st)));
  Seed("rpc_messages", "stream_open", Sel(7, EncodeStreamOpen(MatchSpec{"timeout", MatchMode::kSubstring, {"web"}})));
  Seed("rpc_messages", "holdings_pull", Sel(8, EncodeHoldingsPull(7, 3)));
  HoldingsDelta d;
  d.epoch = 7;
  d.version = 4;
  d.add = {{{kA, kB}, 10}};
  d.drop = {{kA, kA}};
  Seed("rpc_messages", "holdings_delta", Sel(9, EncodeHoldingsDelta(d)));
  Seed("rpc_messages", "segment_copy", Sel(10, EncodeSegmentCopy({{{kA, kB}, 2}}, "SEGMENT FILE BYTES")));
}

void Query() {
  const std::string now = U64(1700000000000);
  Seed("query_params", "query", Sel(0, now + "from=1h&to=now&q=connection%20reset&topic=web&topic=db&limit=5&format=json"));
  Seed("query_params", "regex", Sel(0, now + "from=2023-11-14T22:13:20Z&to=" + kB.ToString() + "&q=status%3D5%5Cd%5Cd&regex"));
  Seed("query_params", "stream", Sel(0, now + "q=error&window=5s"));
  Seed("query_params", "bound", Sel(1, now + "2023-11-14T22:13:20.123+01:00"));
  Seed("query_params", "rfc3339", Sel(2, now + "2006-01-02T15:04:05.999999999Z"));
  Seed("query_params", "url", Sel(3, now + "a b+c%zz/\xc3\xa9"));
}

void Segments() {
  SegmentWriterOptions opt;
  opt.block_target_bytes = 4096;
  auto enc = SegmentEncoder::Create(opt);
  std::string records;
  for (int i = 0; i < 120; ++i) {
    const std::string rec = Ulid::FromParts(1700000000000 + i, 0x77, i).ToString() + (i % 3 ? " web " : " db ") +
                            "GET /api/v1/items/" + std::to_string(i * 7919) + " status=200 bytes=" +
                            std::to_string(i * 31) + "\n";
    (void)(*enc)->Append(rec);
  }
  const std::string image = (*enc)->Finish()->bytes;
  Seed("segment_file", "file", Sel(0, image));
  Seed("segment_file", "repaired", Sel(1, image));
  Seed("segment_file", "records", Sel(2, std::string("\x00", 1) + U64(1700000000000) +
                                             "web GET /\ndb SELECT 1\nweb POST /login\nbad\nweb GET /health"));
  Seed("segment_file", "tools", Sel(3, image));
  std::string a, b;
  for (int i = 0; i < 4; ++i) a += Ulid::FromParts(1700000000000 + 2 * i, 1, 0).ToString() + " web line " + std::to_string(i) + "\n";
  for (int i = 0; i < 4; ++i) b += Ulid::FromParts(1700000000000 + i, 1, 0).ToString() + " db row " + std::to_string(i) + "\n";
  Seed("records", "two_runs", a + std::string(1, '\0') + b + "not a record\n" + kA.ToString() + " torn");
}

void Http() {
  Seed("http_request", "get", "\x10\x05GET /store/query?from=1h&q=a%20b HTTP/1.1\r\nHost: x\r\nUser-Agent: curl\r\n\r\n");
  Seed("http_request", "pipelined",
       "\x40\x07HEAD /store/query?q=x HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.0\r\n\r\n"
       "OPTIONS * HTTP/1.1\r\nAccess-Control-Request-Method: GET\r\n\r\n");
  Seed("http_request", "post_body",
       "\x40\x03POST /ingest HTTP/1.1\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\nhello world"
       "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  Seed("http_request", "absolute", "\x00\x01GET http://host:7650/cluster#frag HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
}

void Flags() {
  auto args = [](std::initializer_list<const char*> l) {
    std::string s(1, '\x02');
    for (const char* a : l) s += std::string(a) + '\0';
    return s;
  };
  Seed("flags", "typed", args({"-s", "v", "-b", "-n=0x10", "--d", "1m30s", "-l", "a", "-l=b", "-alias", "9", "--", "pos"}));
  Seed("flags", "ingeststore", args({"-api", "127.0.0.1:0", "-cluster", "tcp://127.0.0.1:0", "-peer", "10.0.0.2",
                                     "-store.segment-replication-factor", "2", "-ingest.record-max-size", "1048576"}));
  std::string store = args({"-store.segment-target-age", "3s", "-store.segment-retain", "168h", "-debug"});
  store[0] = '\x01';
  Seed("flags", "store", store);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  root = argv[1];
  Ulids();
  Durations();
  Addresses();
  Gossip();
  Seal();
  Rpc();
  Query();
  Segments();
  Http();
  Flags();
  return 0;
}
