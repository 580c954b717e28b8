// End to end, as a user runs it: a real `oklog ingeststore` process on loopback ports it picks
// itself (port 0, read back from its -ports.file), the real `oklog forward` and `oklog query`
// commands, and curl.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>

#include <filesystem>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/http_client.h"
#include "segments/segment_file.h"
#include "test_util.h"

namespace oklog {
namespace {

namespace fs = std::filesystem;

class NodeProcess {
 public:
  NodeProcess(const std::string& dir, std::vector<std::string> extra = {})
      : dir_(dir), ports_file_(dir + "/node.ports") {
    args_ = {OklogBinary(), "ingeststore", "-api", "127.0.0.1:0", "-ingest.fast", "127.0.0.1:0",
             "-ingest.durable", "127.0.0.1:0", "-ingest.bulk", "127.0.0.1:0", "-cluster", "127.0.0.1:0",
             "-ports.file", ports_file_, "-ingest.path", dir + "/data/ingest", "-store.path", dir + "/data/store"};
    args_.insert(args_.end(), extra.begin(), extra.end());
  }
  // Runs the node under `sh -c 'ulimit -n N; exec oklog ...'` (a descriptor limit of N).
  void LimitDescriptors(int n) {
    args_.insert(args_.begin(), {"/bin/sh", "-c", "ulimit -n " + std::to_string(n) + " && exec \"$0\" \"$@\""});
  }
  uint16_t cluster_port() const { return cluster_; }
  uint16_t api_port() const { return api_; }
  uint16_t fast_port() const { return fast_; }
  // The node's CPU seconds so far (utime + stime from /proc).
  double CpuSeconds() const {
    std::string stat = ReadFile("/proc/" + std::to_string(proc_->pid()) + "/stat");
    std::istringstream in(stat.substr(stat.rfind(')') + 2));
    std::string f;
    double ticks = 0;
    for (int i = 3; i <= 15 && in >> f; ++i)
      if (i == 14 || i == 15) ticks += std::stod(f);
    return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  // From now on every start binds the ports of the current run again (a forwarder reconnects
  // to the restarted node).
  void KeepPorts() {
    const std::pair<const char*, uint16_t> flags[] = {
        {"-api", api_}, {"-ingest.fast", fast_}, {"-ingest.durable", durable_}, {"-ingest.bulk", bulk_}, {"-cluster", cluster_}};
    for (size_t i = 0; i + 1 < args_.size(); ++i)
      for (const auto& [flag, port] : flags)
        if (args_[i] == flag) args_[i + 1] = "127.0.0.1:" + std::to_string(port);
  }
  // Every start binds new ports (unless KeepPorts) and reads them back.
  void Start() {
    fs::remove(ports_file_);
    proc_ = std::make_unique<Process>(args_, dir_, "node" + std::to_string(++starts_));
    auto ports = WaitForPorts(ports_file_, [&] { return proc_->running(); });
    ASSERT_TRUE(proc_->running()) << "oklog exited: " << proc_->Stderr();
    ASSERT_EQ(ports.size(), 5u) << ReadFile(ports_file_) << proc_->Stderr();
    api_ = ports["api"];
    fast_ = ports["ingest.fast"];
    durable_ = ports["ingest.durable"];
    bulk_ = ports["ingest.bulk"];
    cluster_ = ports["cluster"];
    ASSERT_TRUE(WaitFor([&] { return !proc_->running() || Get("/health").body == kHealthyUnkeyed; },
                        std::chrono::seconds(20)));
    ASSERT_TRUE(proc_->running()) << "oklog exited: " << proc_->Stderr();
  }
  // SIGTERM; a clean shutdown exits 0.
  void Stop() {
    proc_->Signal(SIGTERM);
    EXPECT_EQ(proc_->Wait(std::chrono::seconds(30)), 0) << proc_->Stderr();
  }
  HttpClientResponse Get(const std::string& path_query, const char* method = "GET") {
    auto r = HttpFetchAll(method, "127.0.0.1:" + std::to_string(api_) + path_query);
    return r.ok() ? r.value() : HttpClientResponse{};
  }
  uint64_t Metric(const std::string& name) {
    std::string text = Get("/metrics").body;
    auto pos = text.find("\n" + name + " ");
    return pos == std::string::npos ? 0 : std::stoull(text.substr(pos + name.size() + 2));
  }
  // Runs `oklog forward` with stdin from a file; expects exit 0.
  void Forward(const std::string& file, int port = 0) {
    Process f({OklogBinary(), "forward", "127.0.0.1:" + std::to_string(port ? port : fast_)}, dir_, "forward", file);
    EXPECT_EQ(f.Wait(std::chrono::seconds(120)), 0) << f.Stderr();
  }
  bool WaitStored(uint64_t records) {
    return WaitFor([&] { return Metric("oklog_store_written_records_total") >= records; }, std::chrono::seconds(60));
  }
  std::string Store() const { return "127.0.0.1:" + std::to_string(api_); }
  std::string Url(const std::string& pq) const { return "http://" + Store() + pq; }
  Process& proc() { return *proc_; }
  uint16_t durable_port() const { return durable_; }
  uint16_t bulk_port() const { return bulk_; }

 private:
  std::string dir_, ports_file_;
  uint16_t api_ = 0, fast_ = 0, durable_ = 0, bulk_ = 0, cluster_ = 0;  // of the current run
  std::vector<std::string> args_;
  std::unique_ptr<Process> proc_;
  int starts_ = 0;
};

// The corpus: plain lines, '%' format sequences, invalid UTF-8, NUL and CR bytes, one 200 KiB line.
std::vector<std::string> MakeLines(size_t n, uint32_t seed, const std::string& tag) {
  std::mt19937 rng(seed);
  std::vector<std::string> lines;
  lines.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string l = tag + " line " + std::to_string(i) + " req=" + std::to_string(rng());
    switch (i % 7) {
      case 1: l += " 100% done %s %n %%"; break;
      case 2: l += std::string(" bad utf8 \xff\xfe\xc3\x28 end"); break;
      case 3: l += std::string(" nul\0byte and cr\r", 17); break;
      case 4: l += " level=error status=503 upstream timeout"; break;
      default: break;
    }
    lines.push_back(std::move(l));
  }
  lines[n / 2] = tag + " huge " + std::string(200 * 1024, 'h');
  return lines;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

// Equality of two large texts, reporting sizes and the first difference instead of both texts.
::testing::AssertionResult SameText(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  size_t from = i > 40 ? i - 40 : 0;
  return ::testing::AssertionFailure() << "got " << got.size() << " bytes, want " << want.size()
                                       << "; first difference at byte " << i << ": got \""
                                       << got.substr(from, 80) << "\" want \"" << want.substr(from, 80) << "\"";
}

class SingleNodeTest : public ::testing::Test {
 protected:
  std::string LastQueryError() { return ReadFile(dir_.path() + "/query.err"); }
  std::string Query(NodeProcess& node, const std::string& flags, int* rc = nullptr) {
    return Shell(OklogBinary() + " query -store " + node.Store() + " " + flags + " 2>" + dir_.path() + "/query.err",
                 rc);
  }
  TempDir dir_;
};

TEST_F(SingleNodeTest, ForwardQueryRestartAndBadInputs) {
  NodeProcess node(dir_.path());
  node.Start();
  // 1. 100,000 lines, then a clean restart, then 100,000 more: all back, exact and in order.
  auto first = MakeLines(100000, 1, "alpha");
  auto second = MakeLines(100000, 2, "beta");
  WriteFile(dir_.path() + "/first.txt", Join(first));
  WriteFile(dir_.path() + "/second.txt", Join(second));
  node.Forward(dir_.path() + "/first.txt");
  node.Stop();  // SIGTERM in between: active segments flushed, exit 0
  node.Start();
  node.Forward(dir_.path() + "/second.txt");
  ASSERT_TRUE(node.WaitStored(100000)) << node.proc().Stderr();
  std::string all;
  ASSERT_TRUE(WaitFor([&] {
    all = Query(node, "-from 1h");
    return all.size() >= Join(first).size() + Join(second).size();
  }, std::chrono::seconds(30)));
  EXPECT_TRUE(SameText(all, Join(first) + Join(second)));

  // 2. -ulid and -topic add the fields; the ULIDs strictly increase.
  std::string with_ids = Query(node, "-from 1h -ulid -topic -q 'beta line 99999 '");
  ASSERT_EQ(with_ids.substr(26, 14), " default beta ");

  // 3. Substring and regex results equal a brute-force filter of what was sent.
  auto expect = [&](const std::function<bool(const std::string&)>& pred) {
    std::string out;
    for (const auto* v : {&first, &second})
      for (const auto& l : *v)
        if (pred(l)) out += l + "\n";
    return out;
  };
  EXPECT_TRUE(SameText(Query(node, "-from 1h -q 'upstream timeout'"),
            expect([](const std::string& l) { return l.find("upstream timeout") != std::string::npos; })));
  EXPECT_TRUE(SameText(Query(node, "-from 1h -q '100% done %s'"),
            expect([](const std::string& l) { return l.find("100% done %s") != std::string::npos; })));
  EXPECT_TRUE(SameText(Query(node, "-from 1h -regex -q 'alpha line 1[0-9]{4} req=[0-9]+ 100%'"),
            expect([](const std::string& l) {
              // "alpha line " then a 5-digit number starting with 1, " req=" digits, " 100%"
              if (l.rfind("alpha line 1", 0) != 0 || l.size() < 22 || l.compare(16, 5, " req=") != 0) return false;
              for (int i = 12; i < 16; ++i)
                if (!std::isdigit(static_cast<unsigned char>(l[i]))) return false;
              size_t d = 21;
              while (d < l.size() && std::isdigit(static_cast<unsigned char>(l[d]))) ++d;
              return d > 21 && l.compare(d, 5, " 100%") == 0;
            }))) << LastQueryError();
  // `$` matches at the end of the line (OK Log's did not, because of the trailing newline).
  EXPECT_TRUE(SameText(Query(node, "-from 1h -regex -q 'timeout$'"),
            expect([](const std::string& l) { return l.size() >= 7 && l.compare(l.size() - 7, 7, "timeout") == 0; })))
      << LastQueryError();

  // 4. curl: HEAD gives the stats headers and no body; GET streams records with ULID and topic.
  std::string head = Shell("curl -sSI '" + node.Url("/store/query?from=1h&q=alpha") + "'");
  EXPECT_NE(head.find("HTTP/1.1 200"), std::string::npos) << head;
  EXPECT_NE(head.find("X-Oklog-Segments-Queried: "), std::string::npos);
  EXPECT_NE(head.find("X-Oklog-Nodes-Queried: 1"), std::string::npos);
  EXPECT_NE(head.find("X-Oklog-Max-Data-Set-Size: "), std::string::npos);
  EXPECT_NE(head.find("X-Oklog-Error-Count: 0"), std::string::npos);
  EXPECT_NE(head.find("X-Oklog-Q: alpha"), std::string::npos);
  std::string body = Shell("curl -sS '" + node.Url("/store/query?from=1h&q=beta+line+42+") + "'");
  ASSERT_GT(body.size(), 27u);
  EXPECT_EQ(body.substr(26, 19), " default beta line ");

  // 5. Bad parameters: 400 with a message.
  int code = 0;
  std::string bad_from = Shell("curl -s -w ' %{http_code}' '" + node.Url("/store/query?from=yesterday") + "'", &code);
  EXPECT_NE(bad_from.find("parsing 'from'"), std::string::npos) << bad_from;
  EXPECT_NE(bad_from.find(" 400"), std::string::npos);
  std::string bad_re = Shell("curl -s -w ' %{http_code}' '" + node.Url("/store/query?from=1h&regex&q=a(b") + "'");
  EXPECT_NE(bad_re.find("compiling regex"), std::string::npos) << bad_re;
  EXPECT_NE(bad_re.find(" 400"), std::string::npos);
  int rc = 0;
  EXPECT_EQ(Query(node, "-from yesterday", &rc), "");  // nothing on stdout: the reason goes to stderr
  EXPECT_EQ(rc, 1);
  EXPECT_NE(LastQueryError().find("HTTP 400: parsing 'from'"), std::string::npos) << LastQueryError();

  // 6. Garbage HTTP gets a 400 and the node keeps serving.
  std::string garbage = Shell("printf 'GARBAGE\\x00\\xff\\r\\n\\r\\n' | timeout 5 curl -s telnet://" + node.Store() +
                              " 2>/dev/null | head -c 12");
  EXPECT_NE(garbage.find("400"), std::string::npos) << garbage;
  EXPECT_EQ(node.Get("/health").status, 200);
  node.Stop();
}

// Port 0 everywhere: the node picks its ports, logs them all on one line once bound, and writes
// them to -ports.file; a store node has no ingest listeners to report.
TEST_F(SingleNodeTest, PortZeroListenersAreReportedInOneLogLineAndThePortsFile) {
  const std::string file = dir_.path() + "/ports";
  Process node({OklogBinary(), "ingeststore", "-api", "127.0.0.1:0", "-ingest.fast", "127.0.0.1:0", "-ingest.durable",
                "127.0.0.1:0", "-ingest.bulk", "127.0.0.1:0", "-cluster", "127.0.0.1:0", "-ports.file", file,
                "-ingest.path", dir_.path() + "/data/ingest", "-store.path", dir_.path() + "/data/store"},
               dir_.path(), "node");
  auto ports = WaitForPorts(file, [&] { return node.running(); });
  ASSERT_EQ(ports.size(), 5u) << node.Stderr();
  const std::vector<std::string> names = {"api", "ingest.fast", "ingest.durable", "ingest.bulk", "cluster"};
  std::string want_file;
  std::set<uint16_t> distinct;
  for (const auto& name : names) {
    ASSERT_EQ(ports.count(name), 1u) << name;
    EXPECT_GT(ports[name], 0) << name;
    distinct.insert(ports[name]);
    want_file += name + "=127.0.0.1:" + std::to_string(ports[name]) + "\n";
  }
  EXPECT_EQ(distinct.size(), 5u);
  EXPECT_EQ(ReadFile(file), want_file);
  EXPECT_FALSE(fs::exists(file + ".tmp"));
  // They are the ports the node serves on.
  auto health = HttpFetchAll("GET", "127.0.0.1:" + std::to_string(ports["api"]) + "/health");
  ASSERT_TRUE(health.ok()) << health.status().ToString();
  EXPECT_EQ(health->body, kHealthyUnkeyed);
  for (const char* name : {"ingest.fast", "ingest.durable", "ingest.bulk", "cluster"}) {
    int fd = ConnectLoopback(ports[name]);
    EXPECT_GE(fd, 0) << name;
    if (fd >= 0) ::close(fd);
  }
  // One log line holds them all.
  std::string err = node.Stderr(), line;
  for (std::istringstream in(err); std::getline(in, line);)
    if (line.find("listening:") != std::string::npos) break;
  ASSERT_NE(line.find("listening:"), std::string::npos) << err;
  for (const auto& name : names)
    EXPECT_NE(line.find(" " + name + "=127.0.0.1:" + std::to_string(ports[name])), std::string::npos) << line;

  const std::string store_file = dir_.path() + "/store.ports";
  Process store({OklogBinary(), "store", "-api", "127.0.0.1:0", "-cluster", "127.0.0.1:0", "-ports.file", store_file,
                 "-store.path", dir_.path() + "/store-only"},
                dir_.path(), "store");
  auto store_ports = WaitForPorts(store_file, [&] { return store.running(); });
  EXPECT_EQ(store_ports.size(), 2u) << ReadFile(store_file) << store.Stderr();
  EXPECT_EQ(store_ports.count("api") + store_ports.count("cluster"), 2u) << ReadFile(store_file);
  for (Process* p : {&store, &node}) {
    p->Signal(SIGTERM);
    EXPECT_EQ(p->Wait(std::chrono::seconds(30)), 0) << p->Stderr();
  }
}

TEST_F(SingleNodeTest, OversizeLineIsCutAndCounted) {
  NodeProcess node(dir_.path());
  node.Start();
  std::string big(1536 * 1024, 'x');  // 1.5 MiB, over the 1 MiB default
  WriteFile(dir_.path() + "/big.txt", "before\nBIG" + big + "\nafter\n");
  node.Forward(dir_.path() + "/big.txt");
  ASSERT_TRUE(node.WaitStored(3));
  EXPECT_EQ(node.Metric("oklog_ingest_records_truncated_total"), 1u);
  std::string out = Query(node, "-from 1h");
  EXPECT_TRUE(SameText(out, "before\nBIG" + big.substr(0, (1 << 20) - 3) + "\nafter\n"));
  node.Stop();
}

TEST_F(SingleNodeTest, DurablePortKeepsEverythingAcrossKill9) {
  NodeProcess node(dir_.path());
  node.Start();
  auto lines = MakeLines(20000, 3, "durable");
  WriteFile(dir_.path() + "/d.txt", Join(lines));
  node.Forward(dir_.path() + "/d.txt", node.durable_port());
  // forward returned: the ingester read (and group-committed) every byte. Crash it now.
  EXPECT_GT(node.Metric("oklog_ingest_writer_syncs_total"), 0u);
  node.proc().Signal(SIGKILL);
  EXPECT_EQ(node.proc().Wait(std::chrono::seconds(10)), 128 + SIGKILL);
  node.Start();  // recovery: .active and .pending back to .flushed, then consumed
  std::string out;
  ASSERT_TRUE(WaitFor([&] {
    out = Query(node, "-from 1h");
    return out.size() >= Join(lines).size();
  }, std::chrono::seconds(30)));
  EXPECT_TRUE(SameText(out, Join(lines)));
  node.Stop();
}

// Topics on the CLI: `-topic NAME` (or -topics) selects, bare `-topic` prints the topic.
TEST_F(SingleNodeTest, QueryCliSelectsTopicsWithAValueAndPrintsThemWithout) {
  NodeProcess node(dir_.path(), {"-ingest.topic-mode", "dynamic"});
  node.Start();
  WriteFile(dir_.path() + "/t.txt", "web GET /a\ndb select 1\nweb GET /b\nnot-a-topic! line\n");
  node.Forward(dir_.path() + "/t.txt");
  ASSERT_TRUE(node.WaitStored(4));
  const std::string web = Query(node, "-from 1h -topic web");
  EXPECT_EQ(web, Query(node, "-from 1h -topics web"));
  EXPECT_EQ(web, Query(node, "-from 1h -topic=web"));
  EXPECT_EQ(std::count(web.begin(), web.end(), '\n'), 2) << web;
  EXPECT_EQ(web.find("select"), std::string::npos) << web;
  EXPECT_EQ(Query(node, "-from 1h -topic web -topics db").size(), web.size() + Query(node, "-from 1h -topic db").size());
  // Bare: every record, each line starting with its topic.
  const std::string all = Query(node, "-from 1h -topic");
  EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 4) << all;
  EXPECT_EQ(all.rfind("web ", 0), 0u) << all;
  EXPECT_NE(all.find("\ndb "), std::string::npos) << all;
  EXPECT_NE(all.find("\ndefault "), std::string::npos) << all;  // the line without a valid topic
  node.Stop();
}

// Bulk mode on one node: when `oklog forward -bulk` exits 0, every segment was acknowledged,
// that is stored by the store: the whole hostile corpus is queryable at once, byte for byte.
TEST_F(SingleNodeTest, BulkForwardIsQueryableTheMomentItExits) {
  NodeProcess node(dir_.path());
  node.Start();
  auto lines = MakeLines(20000, 5, "bulk");
  WriteFile(dir_.path() + "/b.txt", Join(lines));
  Process f({OklogBinary(), "forward", "-bulk", "-bulk.segment-size", "262144",
             "127.0.0.1:" + std::to_string(node.bulk_port())},
            dir_.path(), "forward-bulk", dir_.path() + "/b.txt");
  ASSERT_EQ(f.Wait(std::chrono::seconds(60)), 0) << f.Stderr();
  EXPECT_TRUE(SameText(Query(node, "-from 1h"), Join(lines)));
  EXPECT_GE(node.Metric("oklog_ingest_bulk_acks_total"), 4u);  // ~1.2 MB in 256 KiB segments
  EXPECT_EQ(node.Metric("oklog_ingest_bulk_unacked_segments"), 0u);
  node.Stop();
}

// -store.max-bytes keeps the newest data: with a limit smaller than the newest segment, the
// oldest blocks go and the newest records stay queryable (they used to be trashed whole, and
// the query answered nothing).
TEST_F(SingleNodeTest, SizeRetentionKeepsTheNewestRecords) {
  NodeProcess node(dir_.path(), {"-store.max-bytes", "300000"});
  node.Start();
  std::string data;
  const size_t kN = 200000;
  for (size_t i = 0; i < kN; ++i) data += "sized " + std::to_string(1000000 + i) + " the quick brown fox\n";
  WriteFile(dir_.path() + "/s.txt", data);
  node.Forward(dir_.path() + "/s.txt");
  ASSERT_TRUE(node.WaitStored(kN));
  std::string out;
  uint64_t store_bytes = 0;
  // Retention settles: the store fits the limit (the trimmed rewrite may take a round or two).
  ASSERT_TRUE(WaitFor([&] {
    store_bytes = 0;
    for (const auto& e : fs::directory_iterator(dir_.path() + "/data/store"))
      if (e.path().extension() == ".seg") store_bytes += fs::file_size(e.path());
    return store_bytes > 0 && store_bytes <= 300000;
  }, std::chrono::seconds(30))) << store_bytes << " bytes of segments";
  out = Query(node, "-from 1h");
  ASSERT_FALSE(out.empty());
  const size_t lines = static_cast<size_t>(std::count(out.begin(), out.end(), '\n'));
  EXPECT_GT(lines, 1000u);
  EXPECT_LT(lines, kN);
  // Exactly the newest `lines` records, in order.
  EXPECT_TRUE(SameText(out, data.substr(data.size() - out.size())));
  EXPECT_TRUE(out.ends_with("\nsized 1199999 the quick brown fox\n"));
  std::fprintf(stderr, "kept the newest %zu of %zu records in %llu bytes of segments\n", lines, kN,
               static_cast<unsigned long long>(store_bytes));
  node.Stop();
}

// FIFOs named like segments in the store and ingest directories: the node starts at once (an
// open for reading would wait for a writer forever), skips and counts them, and serves.
TEST_F(SingleNodeTest, FifosNamedLikeSegmentsNeitherHangTheStartNorStopTheNode) {
  const std::string store = dir_.path() + "/data/store", ingest = dir_.path() + "/data/ingest";
  fs::create_directories(store);
  fs::create_directories(ingest);
  const std::vector<std::string> fifos = {
      store + "/01AAAAAAAAAAAAAAAAAAAAAAAA-01AAAAAAAAAAAAAAAAAAAAAAAB.seg",
      ingest + "/01AAAAAAAAAAAAAAAAAAAAAAAC.active", ingest + "/01AAAAAAAAAAAAAAAAAAAAAAAD.flushed"};
  for (const std::string& f : fifos) ASSERT_EQ(::mkfifo(f.c_str(), 0644), 0) << f;
  NodeProcess node(dir_.path());
  node.Start();  // bounded: the ports file and /health within 20 s each
  EXPECT_EQ(node.Metric("oklog_store_skipped_files_total"), 1u);
  EXPECT_EQ(node.Metric("oklog_ingest_skipped_files_total"), 2u);
  EXPECT_NE(node.proc().Stderr().find("not a regular file"), std::string::npos) << node.proc().Stderr();
  WriteFile(dir_.path() + "/f.txt", "after fifo one\nafter fifo two\n");
  node.Forward(dir_.path() + "/f.txt");
  ASSERT_TRUE(node.WaitStored(2));
  EXPECT_NE(Query(node, "-from 1h -q after").find("after fifo two"), std::string::npos) << LastQueryError();
  for (const std::string& f : fifos) EXPECT_TRUE(fs::is_fifo(f)) << f << " was moved or removed";
  node.Stop();
}

// Whole-file failures: a segment whose footer has a flipped byte (its index cannot be trusted)
// and a truncated one are each moved whole to quarantine/, logged and counted; the rest is
// served.
TEST_F(SingleNodeTest, CorruptAndTruncatedSegmentsAreReportedAndMovedAside) {
  NodeProcess node(dir_.path());
  node.Start();
  for (int k = 0; k < 3; ++k) {
    WriteFile(dir_.path() + "/f.txt", Join(MakeLines(3000, 10 + k, "seg" + std::to_string(k))));
    node.Forward(dir_.path() + "/f.txt");
    ASSERT_TRUE(node.WaitStored(3000u * (k + 1)));
  }
  node.Stop();
  std::vector<std::string> segs;
  for (auto& e : fs::directory_iterator(dir_.path() + "/data/store"))
    if (e.path().extension() == ".seg") segs.push_back(e.path());
  std::sort(segs.begin(), segs.end());
  ASSERT_GE(segs.size(), 3u);
  std::string a = ReadFile(segs[0]);
  a[a.size() - 12] ^= 0x5a;  // a flipped byte in the footer
  WriteFile(segs[0], a);
  std::string b = ReadFile(segs[1]);
  WriteFile(segs[1], b.substr(0, b.size() / 2));  // truncated
  node.Start();
  EXPECT_TRUE(fs::exists(dir_.path() + "/data/store/quarantine/" + fs::path(segs[0]).filename().string()));
  EXPECT_TRUE(fs::exists(dir_.path() + "/data/store/quarantine/" + fs::path(segs[1]).filename().string()));
  EXPECT_EQ(node.Metric("oklog_store_quarantined_segments_total"), 2u);
  std::string err = node.proc().Stderr();
  EXPECT_NE(err.find(fs::path(segs[0]).filename().string()), std::string::npos) << err;
  EXPECT_NE(err.find("quarantine"), std::string::npos);
  // The rest is still served.
  EXPECT_FALSE(Query(node, "-from 1h -q seg2").empty());
  node.Stop();
}

// One flipped byte inside block 1 of a multi-block segment on disk, found at the restart: only
// that block is lost. The segment stays (nothing in quarantine/), the block is logged with its
// file and index and counted once, and a query over the whole range answers 206 naming one
// skipped block, with every record of every other block, byte for byte.
TEST_F(SingleNodeTest, AFlippedByteInOneBlockLosesThatBlockOnlyAndTheQueryIs206) {
  NodeProcess node(dir_.path());
  node.Start();
  std::vector<std::string> lines;
  for (int i = 0; i < 30000; ++i)
    lines.push_back("blk line " + std::to_string(i) + " " + std::string(40 + i % 50, static_cast<char>('a' + i % 26)));
  WriteFile(dir_.path() + "/f.txt", Join(lines));
  node.Forward(dir_.path() + "/f.txt");
  ASSERT_TRUE(node.WaitStored(lines.size()));
  const std::string query = "/store/query?from=1h&to=now";
  HttpClientResponse before = node.Get(query);
  ASSERT_EQ(before.status, 200);
  node.Stop();

  // The segment with the most blocks; block 1's record text, read while it is still good.
  std::string victim;
  BlockInfo b1;
  std::string block_text;
  size_t most = 0;
  for (auto& e : fs::directory_iterator(dir_.path() + "/data/store")) {
    if (e.path().extension() != ".seg") continue;
    auto r = SegmentReader::Open(e.path().string());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if ((*r)->blocks().size() <= most) continue;
    most = (*r)->blocks().size();
    victim = e.path().string();
    b1 = (*r)->blocks()[1];
    ASSERT_TRUE((*r)->ReadBlock(1, &block_text).ok());
  }
  ASSERT_GE(most, 3u) << "no multi-block segment";
  std::string want = before.body;
  const size_t at = want.find(block_text);
  ASSERT_NE(at, std::string::npos);
  want.erase(at, block_text.size());

  std::string data = ReadFile(victim);
  data[b1.offset + b1.compressed_size / 2] ^= 0x5a;
  WriteFile(victim, data);
  node.Start();
  EXPECT_TRUE(fs::exists(victim));
  EXPECT_FALSE(fs::exists(dir_.path() + "/data/store/quarantine/" + fs::path(victim).filename().string()));
  EXPECT_EQ(node.Metric("oklog_store_blocks_quarantined_total"), 1u);
  EXPECT_EQ(node.Metric("oklog_store_quarantined_segments_total"), 0u);
  const std::string err = node.proc().Stderr();
  EXPECT_NE(err.find(fs::path(victim).filename().string() + " block=1 "), std::string::npos) << err;

  HttpClientResponse after = node.Get(query);
  EXPECT_EQ(after.status, 206);
  EXPECT_EQ(after.Header("X-Oklog-Skipped-Blocks"), "1");
  EXPECT_EQ(after.Header("X-Oklog-Skipped-Records"), std::to_string(b1.records));
  EXPECT_TRUE(SameText(after.body, want));
  // Counted once however often it is queried.
  EXPECT_EQ(node.Get(query).status, 206);
  EXPECT_EQ(node.Metric("oklog_store_blocks_quarantined_total"), 1u);
  node.Stop();
}

// Idle floods. With 256 descriptors each listener takes at most 16 connections (the automatic
// cap); a flood of idle connections on one port is closed at the cap, and the other ports keep
// serving meanwhile; once the flood ends nothing spins. What each gets: the ingest port's
// extra connections are closed at once and counted in
// oklog_ingest_connections_closed_total{reason="cap"}, the cluster port's in
// oklog_rpc_streams_dropped_total{reason="cap"}, the API's in oklog_api_connections_refused_total.
TEST_F(SingleNodeTest, AnIdleConnectionFloodOnOnePortIsCappedAndTheOthersKeepServing) {
  NodeProcess node(dir_.path());
  node.LimitDescriptors(256);
  node.Start();
  auto flood = [](uint16_t port, int n) {
    std::vector<int> fds;
    for (int i = 0; i < n; ++i) {
      int fd = ConnectLoopback(port);
      if (fd >= 0) fds.push_back(fd);
    }
    return fds;
  };
  auto close_all = [](std::vector<int>& fds) {
    for (int fd : fds) ::close(fd);
    fds.clear();
  };
  std::vector<int> fast = flood(node.fast_port(), 300);
  EXPECT_EQ(node.Get("/health").status, 200);  // the API still answers
  std::vector<int> cluster = flood(node.cluster_port(), 300);
  EXPECT_EQ(node.Get("/health").status, 200);
  ASSERT_TRUE(WaitFor([&] {
    return SeriesValue(node.Get("/metrics").body, "oklog_ingest_connections_closed_total{modality=\"fast\",reason=\"cap\"}") > 0 &&
           SeriesValue(node.Get("/metrics").body, "oklog_rpc_streams_dropped_total{reason=\"cap\"}") > 0;
  }, std::chrono::seconds(10))) << node.Get("/metrics").body;
  // A flood of the API itself: the ingest ports still take records.
  std::vector<int> api = flood(node.api_port(), 300);
  WriteFile(dir_.path() + "/l.txt", "during the api flood\n");
  Process f({OklogBinary(), "forward", "127.0.0.1:" + std::to_string(node.durable_port())}, dir_.path(), "fwd",
            dir_.path() + "/l.txt");
  EXPECT_EQ(f.Wait(std::chrono::seconds(30)), 0) << f.Stderr();
  close_all(api);
  close_all(fast);
  close_all(cluster);
  ASSERT_TRUE(node.WaitStored(1));
  EXPECT_GT(SeriesValue(node.Get("/metrics").body, "oklog_api_connections_refused_total"), 0);
  // A request body over the API's 1 MiB bound (no route reads one) is a 413, not held memory.
  WriteFile(dir_.path() + "/big.body", std::string(2 << 20, 'b'));
  EXPECT_EQ(Shell("curl -s -o /dev/null -w '%{http_code}' --data-binary @" + dir_.path() + "/big.body '" +
                  node.Url("/store/query") + "'"),
            "413");
  // Nothing spins once the flood is gone: under a tenth of a CPU over 2 s.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double before = node.CpuSeconds();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_LT(node.CpuSeconds() - before, 0.2);
  EXPECT_NE(Query(node, "-from 1h").find("during the api flood"), std::string::npos);
  node.Stop();
}

// The node-wide memory budget (-memory.budget, common/memory_budget.h). Bulk forwarders that
// each send the first MiBs of a 60 MB frame and stop: each stays under the frame limit, together
// they would hold GBs. What each gets: the connection whose bytes would take the budget over its
// limit is sent ["error", "ingest refused: ...memory budget..."] and closed (counted in
// oklog_memory_refused_total{use="bulk_frame"}); while the budget is used up a query gets 503
// with Retry-After and a live tail 503; the node's resident size stays bounded; once the
// attackers leave the budget is free again and everything answers 200.
TEST_F(SingleNodeTest, TheMemoryBudgetBoundsPartialBulkFramesAndRefusesNewWorkUntilItIsFree) {
  constexpr int64_t kBudget = 16 << 20;
  NodeProcess node(dir_.path(), {"-memory.budget", std::to_string(kBudget)});
  node.Start();
  auto rss = [&] {
    std::istringstream in(ReadFile("/proc/" + std::to_string(node.proc().pid()) + "/status"));
    for (std::string l; std::getline(in, l);)
      if (l.rfind("VmRSS:", 0) == 0) return std::stoull(l.substr(6)) * 1024;
    return 0ull;
  };
  const uint64_t rss_before = rss();
  const std::string chunk(1 << 20, 'x');
  std::vector<int> fds;
  int refused = 0;
  for (int i = 0; i < 12; ++i) {
    int fd = ConnectLoopback(node.bulk_port());
    ASSERT_GE(fd, 0);
    const uint32_t len = 60u << 20;
    const char head[4] = {static_cast<char>(len >> 24), static_cast<char>(len >> 16), static_cast<char>(len >> 8),
                          static_cast<char>(len)};
    ::send(fd, head, 4, MSG_NOSIGNAL);
    for (int k = 0; k < 2; ++k) ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    fds.push_back(fd);
  }
  ASSERT_TRUE(WaitFor([&] {
    return SeriesValue(node.Get("/metrics").body, "oklog_memory_refused_total{use=\"bulk_frame\"}") > 0;
  }, std::chrono::seconds(10))) << node.Get("/metrics").body;
  for (int fd : fds) {  // the refused ones were told why, then closed
    timeval tv{0, 200000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char b[512];
    ssize_t n = ::recv(fd, b, sizeof b, 0);
    if (n > 0 && std::string(b, static_cast<size_t>(n)).find("memory budget") != std::string::npos) ++refused;
  }
  EXPECT_GT(refused, 0) << "no bulk connection was told why it was refused";
  const double used = SeriesValue(node.Get("/metrics").body, "oklog_memory_used_bytes");
  EXPECT_LE(used, static_cast<double>(kBudget)) << "the budget was exceeded";
  EXPECT_LT(rss() - rss_before, 96ull << 20) << "partial frames held more memory than the budget allows";
  // Use up the rest with one more forwarder exactly at the limit: new work is refused meanwhile.
  if (used < kBudget - (1 << 20)) {
    int fd = ConnectLoopback(node.bulk_port());
    const uint32_t len = 60u << 20;
    const char head[4] = {static_cast<char>(len >> 24), static_cast<char>(len >> 16), static_cast<char>(len >> 8),
                          static_cast<char>(len)};
    ::send(fd, head, 4, MSG_NOSIGNAL);
    std::string fill(static_cast<size_t>(kBudget - used) - 100, 'y');
    ::send(fd, fill.data(), fill.size(), MSG_NOSIGNAL);
    fds.push_back(fd);
  }
  ASSERT_TRUE(WaitFor([&] {
    return SeriesValue(node.Get("/metrics").body, "oklog_memory_used_bytes") >= kBudget - 200;
  }, std::chrono::seconds(10))) << node.Get("/metrics").body;
  const std::string q = Shell("curl -s -i '" + node.Url("/store/query?from=1h") + "'");
  EXPECT_EQ(q.rfind("HTTP/1.1 503", 0), 0u) << q;
  EXPECT_NE(q.find("Retry-After: 1"), std::string::npos) << q;
  EXPECT_NE(q.find("memory budget"), std::string::npos) << q;
  EXPECT_EQ(Shell("curl -s -o /dev/null -w '%{http_code}' --max-time 5 '" + node.Url("/store/stream?q=x") + "'"), "503");
  EXPECT_EQ(node.Get("/metrics").status, 200) << "/metrics is refused while the budget is used up";
  for (int fd : fds) ::close(fd);
  ASSERT_TRUE(WaitFor([&] { return SeriesValue(node.Get("/metrics").body, "oklog_memory_used_bytes") < (1 << 20); },
                      std::chrono::seconds(10)))
      << "the budget was not given back when the connections closed";
  EXPECT_EQ(Shell("curl -s -o /dev/null -w '%{http_code}' '" + node.Url("/store/query?from=1h") + "'"), "200");
  node.Stop();
}

// -ingest.idle-timeout: a newline connection that sent nothing for it is half-closed; the
// forwarder, told by the EOF, reconnects, and no line it sent before or after is lost.
TEST_F(SingleNodeTest, AnIdleIngestConnectionIsLetGoAndTheForwarderLosesNothing) {
  NodeProcess node(dir_.path(), {"-ingest.idle-timeout", "1s"});
  node.Start();
  const std::string fifo = dir_.path() + "/in.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  Process f({OklogBinary(), "forward", "127.0.0.1:" + std::to_string(node.fast_port())}, dir_.path(), "fwd", fifo);
  int w = ::open(fifo.c_str(), O_WRONLY);
  ASSERT_GE(w, 0);
  auto put = [&](const std::string& line) { ASSERT_EQ(::write(w, line.data(), line.size()), static_cast<ssize_t>(line.size())); };
  put("before the idle close\n");
  ASSERT_TRUE(WaitFor([&] {
    return SeriesValue(node.Get("/metrics").body, "oklog_ingest_connections_closed_total{modality=\"fast\",reason=\"idle\"}") >= 1;
  }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  put("after the idle close\n");
  ::close(w);
  EXPECT_EQ(f.Wait(std::chrono::seconds(30)), 0) << f.Stderr();
  ASSERT_TRUE(node.WaitStored(2));
  const std::string out = Query(node, "-from 1h");
  EXPECT_NE(out.find("before the idle close"), std::string::npos) << out;
  EXPECT_NE(out.find("after the idle close"), std::string::npos) << out;
  node.Stop();
}

// ---- acknowledged ingest (segments/ingest_acks.h) ----

// Feeds lines to a forwarder's stdin (a FIFO) from a thread, as fast as it takes them.
class FifoFeeder {
 public:
  explicit FifoFeeder(const std::string& path) : path_(path) { EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0); }
  ~FifoFeeder() { Close(); }
  // Opens the FIFO (blocks until the reader opened it) and writes lines in the background.
  void Start(const std::vector<std::string>& lines, size_t from, size_t to) {
    if (fd_ < 0) fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);  // not inherited by a node started later
    ASSERT_GE(fd_, 0);
    Join();
    t_ = std::thread([this, &lines, from, to] {
      std::string chunk;
      for (size_t i = from; i < to; ++i) {
        chunk += lines[i] + "\n";
        if (chunk.size() >= 64 * 1024 || i + 1 == to) {
          for (size_t off = 0; off < chunk.size();) {
            ssize_t n = ::write(fd_, chunk.data() + off, chunk.size() - off);
            if (n <= 0) return;
            off += static_cast<size_t>(n);
          }
          chunk.clear();
          written_ = i + 1;
        }
      }
    });
  }
  size_t written() const { return written_.load(); }
  void Join() {
    if (t_.joinable()) t_.join();
  }
  void Close() {
    Join();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::thread t_;
  std::atomic<size_t> written_{0};
};

std::vector<std::string> NumberedLines(size_t n, const std::string& tag) {
  std::vector<std::string> lines;
  for (size_t i = 0; i < n; ++i) lines.push_back(tag + " " + std::to_string(i) + " " + std::string(40, 'x'));
  return lines;
}

std::set<std::string> LineSet(const std::string& text, size_t* count = nullptr) {
  std::set<std::string> s;
  std::istringstream in(text);
  size_t n = 0;
  for (std::string l; std::getline(in, l);) s.insert(l), ++n;
  if (count) *count = n;
  return s;
}

// kill -9 of the node mid-stream, then a restart on the same ports: the forwarder resends all
// it had no ack for, exits 0, and every line is stored (at least once: a line whose ack the
// crash lost comes twice).
TEST_F(SingleNodeTest, DurableForwardResendsEverythingUnacknowledgedAcrossKill9) {
  NodeProcess node(dir_.path());
  node.Start();
  node.KeepPorts();
  const auto lines = NumberedLines(400000, "dur");
  FifoFeeder feed(dir_.path() + "/in.fifo");
  Process f({OklogBinary(), "forward", "127.0.0.1:" + std::to_string(node.durable_port())}, dir_.path(), "fwd",
            dir_.path() + "/in.fifo");
  feed.Start(lines, 0, lines.size());
  ASSERT_TRUE(WaitFor([&] { return feed.written() >= 100000; }, std::chrono::seconds(60)));
  node.proc().Signal(SIGKILL);
  EXPECT_EQ(node.proc().Wait(std::chrono::seconds(10)), 128 + SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  node.Start();
  feed.Close();
  EXPECT_EQ(f.Wait(std::chrono::seconds(120)), 0) << f.Stderr();
  const std::string want = Join(lines);
  std::string out;
  size_t got_lines = 0;
  ASSERT_TRUE(WaitFor([&] {
    out = Query(node, "-from 1h");
    return LineSet(out, &got_lines).size() >= lines.size();
  }, std::chrono::seconds(60))) << LineSet(out).size() << " distinct lines of " << lines.size();
  EXPECT_EQ(LineSet(out), LineSet(want));
  EXPECT_GE(got_lines, lines.size());
  node.Stop();
}

// The node dies and never comes back: forward cannot confirm the lines it holds, says how many,
// and exits 1 once -confirm-timeout has passed after the end of its input.
TEST_F(SingleNodeTest, DurableForwardExitsOneAndCountsTheUnconfirmedLinesWhenTheNodeNeverReturns) {
  NodeProcess node(dir_.path());
  node.Start();
  const auto lines = NumberedLines(2000, "gone");
  FifoFeeder feed(dir_.path() + "/in.fifo");
  Process f({OklogBinary(), "forward", "-durable", "-confirm-timeout", "2s",
             "127.0.0.1:" + std::to_string(node.durable_port())}, dir_.path(), "fwd", dir_.path() + "/in.fifo");
  feed.Start(lines, 0, 1000);
  feed.Join();
  ASSERT_TRUE(node.WaitStored(1000));
  node.proc().Signal(SIGKILL);
  EXPECT_EQ(node.proc().Wait(std::chrono::seconds(10)), 128 + SIGKILL);
  feed.Start(lines, 1000, 2000);
  feed.Close();
  EXPECT_EQ(f.Wait(std::chrono::seconds(30)), 1) << f.Stderr();
  EXPECT_NE(f.Stderr().find("forward: 1000 line(s) could not be confirmed"), std::string::npos) << f.Stderr();
}

// A client that asks for the back channel (ingest_acks.h) on the durable port: greeted,
// acknowledged after each group commit; the request itself is never stored.
TEST_F(SingleNodeTest, AClientThatAsksForAcksIsGreetedAcknowledgedAndItsRequestIsNotStored) {
  NodeProcess node(dir_.path());
  node.Start();
  int fd = ConnectLoopback(node.durable_port());
  ASSERT_GE(fd, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  // The request split across two writes: it is still recognised.
  SendAll(fd, "oklog-a");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  SendAll(fd, "cks 1\nplain one\nplain two\npartial");
  std::string got;
  char b[256];
  while (got.find("ack 20\n") == std::string::npos) {
    ssize_t n = ::recv(fd, b, sizeof b, 0);
    ASSERT_GT(n, 0) << got;
    got.append(b, static_cast<size_t>(n));
  }
  EXPECT_EQ(got.substr(0, 16), "oklog-durable 1\n") << got;
  SendAll(fd, " line\n");
  ::shutdown(fd, SHUT_WR);
  for (;;) {
    ssize_t n = ::recv(fd, b, sizeof b, 0);
    if (n <= 0) break;
    got.append(b, static_cast<size_t>(n));
  }
  ::close(fd);
  EXPECT_NE(got.find("ack 33\n"), std::string::npos) << "the last ack did not go out before the close: " << got;
  // The fast port answers the request with its kind, and acknowledges nothing.
  int fast = ConnectLoopback(node.fast_port());
  ::setsockopt(fast, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  SendAll(fast, "oklog-acks 1\nfast one\n");
  char hello[13];
  ASSERT_EQ(::recv(fast, hello, sizeof hello, MSG_WAITALL), 13);
  EXPECT_EQ(std::string(hello, 13), "oklog-fast 1\n");
  ::shutdown(fast, SHUT_WR);
  EXPECT_EQ(::recv(fast, b, sizeof b, 0), 0) << "the fast port wrote more than its hello";
  ::close(fast);
  ASSERT_TRUE(node.WaitStored(4));
  std::string out = Query(node, "-from 1h");
  EXPECT_EQ(LineSet(out), (std::set<std::string>{"plain one", "plain two", "partial line", "fast one"})) << out;
  node.Stop();
}

// Plain clients (nc, rsyslog, OK Log's forwarder) are never written a byte on either newline
// port, so one that closes without reading loses nothing; first lines that merely begin like
// the request, even split across writes, are stored whole.
TEST_F(SingleNodeTest, PlainClientsAreNeverWrittenAByteAndLinesLikeTheRequestAreStoredWhole) {
  NodeProcess node(dir_.path());
  node.Start();
  std::vector<int> fds;
  for (uint16_t port : {node.durable_port(), node.fast_port()}) {
    int fd = ConnectLoopback(port);
    ASSERT_GE(fd, 0);
    const std::string tag = port == node.fast_port() ? "fast" : "durable";
    SendAll(fd, "oklog-ac");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    SendAll(fd, "ks 2 " + tag + "\n" + tag + " second\n");
    fds.push_back(fd);
  }
  int prefix_only = ConnectLoopback(node.durable_port());  // a whole stream that is a prefix
  SendAll(prefix_only, "oklog-acks");
  ::shutdown(prefix_only, SHUT_WR);
  ASSERT_TRUE(node.WaitStored(5));
  char b[64];
  for (int fd : fds) {
    EXPECT_EQ(::recv(fd, b, sizeof b, MSG_DONTWAIT), -1) << "a plain client was written to";
    EXPECT_EQ(errno, EAGAIN);
    ::close(fd);  // without reading: nothing is lost
  }
  ::close(prefix_only);
  std::string out = Query(node, "-from 1h");
  EXPECT_EQ(LineSet(out), (std::set<std::string>{"oklog-acks 2 durable", "durable second", "oklog-acks 2 fast",
                                                 "fast second", "oklog-acks"}))
      << out;
  node.Stop();
}

// The fast port cannot acknowledge: when the node is killed mid-stream, forward reports the
// lines it wrote to the dead connection as possibly lost and exits 1.
TEST_F(SingleNodeTest, FastForwardReportsPossiblyLostLinesWhenTheNodeIsKilledMidStream) {
  NodeProcess node(dir_.path());
  node.Start();
  const auto lines = NumberedLines(400000, "fast");
  FifoFeeder feed(dir_.path() + "/in.fifo");
  Process f({OklogBinary(), "forward", "-confirm-timeout", "2s", "127.0.0.1:" + std::to_string(node.fast_port())},
            dir_.path(), "fwd", dir_.path() + "/in.fifo");
  feed.Start(lines, 0, lines.size());
  ASSERT_TRUE(WaitFor([&] { return feed.written() >= 100000; }, std::chrono::seconds(60)));
  node.proc().Signal(SIGKILL);
  EXPECT_EQ(node.proc().Wait(std::chrono::seconds(10)), 128 + SIGKILL);
  feed.Close();
  EXPECT_EQ(f.Wait(std::chrono::seconds(60)), 1) << f.Stderr();
  EXPECT_NE(f.Stderr().find("line(s) possibly lost"), std::string::npos) << f.Stderr();
}

}  // namespace
}  // namespace oklog
