// The live stream end to end, as a user runs it: a real `oklog ingeststore`, the real
// `oklog stream` CLI as a child process, lines written one by one into a real `oklog forward`
// (its stdin is a FIFO), and curl -N. Prints the forward-stdin-to-stream-stdout latency; what it
// asserts is that each line reaches the stream before any segment is flushed, not a time.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "test_util.h"

namespace oklog {
namespace {

using Clock = std::chrono::steady_clock;

class Node {
 public:
  // Starts the node on ports it picks (port 0); WaitHealthy() learns them.
  explicit Node(const std::string& dir, std::vector<std::string> extra = {})
      : dir_(dir), ports_file_(dir + "/node.ports") {
    std::filesystem::create_directories(dir);
    std::vector<std::string> args = {OklogBinary(), "ingeststore", "-api", "127.0.0.1:0", "-ingest.fast",
                                     "127.0.0.1:0", "-ingest.durable", "127.0.0.1:0", "-ingest.bulk", "127.0.0.1:0",
                                     "-cluster", "127.0.0.1:0", "-ports.file", ports_file_,
                                     "-ingest.path", dir + "/data/ingest", "-store.path", dir + "/data/store"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::filesystem::remove(ports_file_);
    proc_ = std::make_unique<Process>(args, dir, "node");
  }
  // Reads the node's ports, then waits for /health. False when it exited or never answered.
  bool WaitHealthy() {
    auto ports = WaitForPorts(ports_file_, [&] { return proc_->running(); });
    api_ = ports["api"];
    fast_ = ports["ingest.fast"];
    cluster_ = ports["cluster"];
    if (api_ == 0 || fast_ == 0 || cluster_ == 0) return false;
    return WaitFor([&] { return !proc_->running() || Get("/health").body == kHealthyUnkeyed; }, std::chrono::seconds(20)) &&
           proc_->running();
  }
  HttpClientResponse Get(const std::string& path_query) {
    auto r = HttpFetchAll("GET", Store() + path_query);
    return r.ok() ? r.value() : HttpClientResponse{};
  }
  // A metric's value, or -1 when it is not rendered.
  double Metric(const std::string& name) {
    std::string text = Get("/metrics").body;
    auto pos = text.find("\n" + name + " ");
    return pos == std::string::npos ? -1 : std::stod(text.substr(pos + name.size() + 2));
  }
  std::string Store() const { return "127.0.0.1:" + std::to_string(api_); }
  std::string Fast() const { return "127.0.0.1:" + std::to_string(fast_); }
  std::string Cluster() const { return "127.0.0.1:" + std::to_string(cluster_); }
  size_t AliveMembers() {
    std::string body = Get("/cluster").body;
    size_t n = 0;
    for (size_t p = body.find("\"state\":\"alive\""); p != std::string::npos; p = body.find("\"state\":\"alive\"", p + 1)) ++n;
    return n;
  }
  // Active segments this node has flushed (every reason), or -1 when the family is not rendered.
  double FlushedSegments() {
    const std::string family = "oklog_ingest_writer_flushes_total";
    std::string text = Get("/metrics").body;
    if (text.find("# TYPE " + family + " counter") == std::string::npos) return -1;
    double n = 0;
    for (size_t p = text.find("\n" + family + "{"); p != std::string::npos; p = text.find("\n" + family + "{", p + 1))
      n += std::stod(text.substr(text.find("} ", p) + 2));
    return n;
  }
  Process& proc() { return *proc_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_, ports_file_;
  uint16_t api_ = 0, fast_ = 0, cluster_ = 0;
  std::unique_ptr<Process> proc_;
};

// `oklog forward` reading a FIFO: lines written here reach the ingester at once.
class Forwarder {
 public:
  Forwarder(const std::string& dir, const std::string& target) : fifo_(dir + "/forward.fifo") {
    EXPECT_EQ(::mkfifo(fifo_.c_str(), 0600), 0);
    proc_ = std::make_unique<Process>(std::vector<std::string>{OklogBinary(), "forward", target}, dir, "forward",
                                      fifo_);
    fd_ = ::open(fifo_.c_str(), O_WRONLY);  // meets the child's open for reading
    EXPECT_GE(fd_, 0);
  }
  ~Forwarder() { Close(); }
  void Send(const std::string& line) {
    std::string l = line + "\n";
    EXPECT_EQ(::write(fd_, l.data(), l.size()), static_cast<ssize_t>(l.size()));
  }
  // End of input: the forwarder sends what is left and exits 0.
  int Close() {
    if (fd_ < 0) return 0;
    ::close(fd_);
    fd_ = -1;
    ::unlink(fifo_.c_str());
    int rc = proc_->Wait(std::chrono::seconds(20));
    EXPECT_EQ(rc, 0) << proc_->Stderr();
    return rc;
  }

 private:
  std::string fifo_;
  std::unique_ptr<Process> proc_;
  int fd_ = -1;
};

// Waits until out() has grown to want bytes, polling every 0.5 ms; the time it took, or -1.
double MsUntil(const std::function<size_t()>& size, size_t want, std::chrono::milliseconds timeout) {
  auto t0 = Clock::now();
  while (Clock::now() - t0 < timeout) {
    if (size() >= want) return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    ::usleep(500);
  }
  return size() >= want ? std::chrono::duration<double, std::milli>(Clock::now() - t0).count() : -1;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

class StreamE2ETest : public ::testing::Test {
 protected:
  TempDir dir_;
};

// How long a line may take to arrive before the test gives up: a bound against hanging, not a
// latency claim. That the stream does not wait for the disk is checked by the flush count: the
// nodes here flush after an hour, so a line that arrives was streamed before any flush.
constexpr auto kArrival = std::chrono::seconds(20);
const std::vector<std::string> kNoFlush = {"-ingest.segment-flush-age", "1h"};

TEST_F(StreamE2ETest, CliSeesMatchingLinesBeforeAnyFlushAndUnsubscribesWhenKilled) {
  Node node(dir_.path(), kNoFlush);
  ASSERT_TRUE(node.WaitHealthy()) << node.proc().Stderr();

  Process stream({OklogBinary(), "stream", "-store", node.Store(), "-q", "MATCH"}, dir_.path(), "stream");
  ASSERT_TRUE(WaitFor([&] { return node.Metric("oklog_stream_subscribers") == 1; }, std::chrono::seconds(10)))
      << stream.Stderr();

  Forwarder fwd(dir_.path(), node.Fast());
  std::vector<double> latencies_ms;
  std::string expected;
  for (int i = 0; i < 30; ++i) {
    fwd.Send("other line " + std::to_string(i) + " not for the stream");
    const std::string line = "MATCH line " + std::to_string(i) + " 100% %s \xff";
    expected += line + "\n";
    auto t0 = Clock::now();
    fwd.Send(line);
    // Polls the CLI's output file every 0.5 ms (WaitFor's 20 ms would dominate the figure).
    bool arrived = false;
    while (!arrived && Clock::now() - t0 < kArrival) {
      arrived = stream.Stdout().size() >= expected.size();
      if (!arrived) ::usleep(500);
    }
    ASSERT_TRUE(arrived) << "line " << i << " did not arrive; stdout so far:\n" << stream.Stdout();
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    // Streamed as the listener read it: nothing is flushed, so nothing is stored either.
    ASSERT_EQ(node.FlushedSegments(), 0) << "line " << i;
    ASSERT_EQ(node.Metric("oklog_store_written_records_total"), 0) << "line " << i;
  }
  EXPECT_EQ(stream.Stdout(), expected) << "only the matching lines, in order, each once";
  double p50 = Percentile(latencies_ms, 0.5), max = Percentile(latencies_ms, 1.0);
  std::printf("forward stdin -> stream stdout latency over %zu lines: p50 %.1f ms, max %.1f ms "
              "(output file polled every 0.5 ms)\n",
              latencies_ms.size(), p50, max);
  EXPECT_EQ(node.Metric("oklog_stream_records_delivered_total"), 30);

  // Killing the client unsubscribes it at once.
  stream.Signal(SIGKILL);
  EXPECT_EQ(stream.Wait(std::chrono::seconds(5)), 128 + SIGKILL);
  EXPECT_TRUE(WaitFor([&] { return node.Metric("oklog_stream_subscribers") == 0; }, std::chrono::seconds(2)));
  fwd.Send("MATCH after the client left");
  EXPECT_EQ(fwd.Close(), 0);
  EXPECT_EQ(node.Metric("oklog_stream_dropped_records_total"), 0);

  node.proc().Signal(SIGTERM);
  EXPECT_EQ(node.proc().Wait(std::chrono::seconds(20)), 0) << node.proc().Stderr();
}

TEST_F(StreamE2ETest, CurlGetsRawRecordsAndBadParamsAre400) {
  Node node(dir_.path());
  ASSERT_TRUE(node.WaitHealthy()) << node.proc().Stderr();

  auto bad = node.Get("/store/stream?window=3parsecs");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body.rfind("parsing 'window': ", 0), 0u) << bad.body;
  bad = node.Get("/store/_stream?q=(&regex");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body.rfind("compiling regex: ", 0), 0u) << bad.body;
  // The CLI says why on stderr, and prints nothing on stdout.
  Process cli({OklogBinary(), "stream", "-store", node.Store(), "-window", "3parsecs"}, dir_.path(), "bad_cli");
  EXPECT_EQ(cli.Wait(std::chrono::seconds(10)), 1);
  EXPECT_EQ(cli.Stdout(), "");
  EXPECT_NE(cli.Stderr().find(": HTTP 400: parsing 'window': "), std::string::npos) << cli.Stderr();

  // -N: no output buffering. The stream never ends by itself: curl is killed, --max-time is a
  // safety net only.
  Process curl({"/usr/bin/curl", "-sN", "--max-time", "20", "http://" + node.Store() + "/store/_stream?q=%5Eweb&regex&window=1s&topic=web"},
               dir_.path(), "curl");
  ASSERT_TRUE(WaitFor([&] { return node.Metric("oklog_stream_subscribers") == 1; }, std::chrono::seconds(3)));
  {
    // Dynamic topics need the node flag; here every record has the static topic "default",
    // so a topic=web stream sees nothing and a topic=default one everything.
    Process curl2({"/usr/bin/curl", "-sN", "--max-time", "20",
                   "http://" + node.Store() + "/store/stream?topic=default&q=hello"},
                  dir_.path(), "curl2");
    ASSERT_TRUE(WaitFor([&] { return node.Metric("oklog_stream_subscribers") == 2; }, std::chrono::seconds(3)));
    Forwarder fwd(dir_.path(), node.Fast());
    fwd.Send("hello from curl");
    fwd.Send("goodbye");
    EXPECT_EQ(fwd.Close(), 0);
    ASSERT_TRUE(WaitFor([&] { return curl2.Stdout().find('\n') != std::string::npos; }, std::chrono::seconds(2)));
    std::string out = curl2.Stdout();
    // Raw records: ULID SP topic SP line LF.
    ASSERT_EQ(out.size(), 26u + 1 + 7 + 1 + 15 + 1) << out;
    EXPECT_EQ(out.substr(26), " default hello from curl\n");
    EXPECT_TRUE(curl2.running()) << "the stream never ends by itself";
    curl2.Signal(SIGTERM);
    EXPECT_EQ(curl2.Wait(std::chrono::seconds(5)), 128 + SIGTERM);
  }
  EXPECT_TRUE(WaitFor([&] { return node.Metric("oklog_stream_subscribers") == 1; }, std::chrono::seconds(2)));
  EXPECT_EQ(curl.Stdout(), "");
  curl.Signal(SIGTERM);
  EXPECT_EQ(curl.Wait(std::chrono::seconds(5)), 128 + SIGTERM);
  EXPECT_TRUE(WaitFor([&] { return node.Metric("oklog_stream_subscribers") == 0; }, std::chrono::seconds(2)));

  node.proc().Signal(SIGTERM);
  EXPECT_EQ(node.proc().Wait(std::chrono::seconds(20)), 0) << node.proc().Stderr();
}

// A stopped (SIGSTOP) `oklog stream` falls behind: the node drops its records and counts them,
// while ingest and a second subscriber go on; once the slow client reads again it reports the
// gap on stderr. (The second client falls behind too, a little: a flood through forward is
// faster than the CLI prints.) Every record is either printed or counted as dropped, once, for
// each client.
TEST_F(StreamE2ETest, SlowClientIsToldOnStderrWhileIngestAndOthersGoOn) {
  Node node(dir_.path());
  ASSERT_TRUE(node.WaitHealthy()) << node.proc().Stderr();
  Process slow({OklogBinary(), "stream", "-store", node.Store(), "-q", "FILL"}, dir_.path(), "slow");
  Process other({OklogBinary(), "stream", "-store", node.Store(), "-q", "FILL"}, dir_.path(), "other");
  ASSERT_TRUE(WaitFor([&] { return node.Metric("oklog_stream_subscribers") == 2; }, std::chrono::seconds(10)));
  slow.Signal(SIGSTOP);

  // 20 MiB: far more than the 4 MiB bound plus what the loopback socket buffers hold.
  constexpr size_t kLines = 200000;
  std::string input;
  input.reserve(kLines * 100);
  for (size_t i = 0; i < kLines; ++i) {
    std::string l = "FILL " + std::to_string(i) + " ";
    l.resize(99, 'x');
    input += l + "\n";
  }
  WriteFile(dir_.path() + "/fill.txt", input);
  Process fwd({OklogBinary(), "forward", node.Fast()}, dir_.path(), "fill_forward", dir_.path() + "/fill.txt");
  EXPECT_EQ(fwd.Wait(std::chrono::seconds(60)), 0) << fwd.Stderr();

  auto lines = [](Process& p) {
    std::string out = p.Stdout();
    return static_cast<size_t>(std::count(out.begin(), out.end(), '\n'));
  };
  auto dropped = [](Process& p) {
    size_t n = 0;
    std::string err = p.Stderr();
    for (size_t i = err.find("stream: dropped "); i != std::string::npos; i = err.find("stream: dropped ", i + 1)) {
      n += std::stoull(err.substr(i + 16));
    }
    return n;
  };
  // The other client is served in full while the slow one is stopped.
  EXPECT_TRUE(WaitFor([&] { return lines(other) + dropped(other) == kLines; }, std::chrono::seconds(30)))
      << lines(other) << " printed + " << dropped(other) << " dropped";
  EXPECT_GT(lines(other), 0u);
  EXPECT_EQ(lines(slow), 0u);
  EXPECT_GT(node.Metric("oklog_stream_dropped_records_total"), static_cast<double>(dropped(other)));

  slow.Signal(SIGCONT);
  EXPECT_TRUE(WaitFor([&] { return lines(slow) + dropped(slow) == kLines; }, std::chrono::seconds(30)))
      << lines(slow) << " printed + " << dropped(slow) << " dropped; stderr: " << slow.Stderr();
  EXPECT_GT(dropped(slow), 0u);
  EXPECT_EQ(static_cast<double>(dropped(slow) + dropped(other)), node.Metric("oklog_stream_dropped_records_total"));
  EXPECT_EQ(slow.Stdout().find("oklog.stream"), std::string::npos) << "notices never go to stdout";
  EXPECT_EQ(slow.Stdout().find("dropped"), std::string::npos);

  node.proc().Signal(SIGTERM);
  EXPECT_EQ(node.proc().Wait(std::chrono::seconds(20)), 0) << node.proc().Stderr();
  EXPECT_EQ(slow.Wait(std::chrono::seconds(5)), 0) << "the stream ended cleanly at shutdown: " << slow.Stderr();
}

// /store/stream on one node carries records forwarded to other nodes, and keeps doing so while
// peers leave and join: A is asked, B and later C are ingested into.
TEST_F(StreamE2ETest, StreamFansOutToPeersThatJoinAndLeave) {
  auto flags = [](std::vector<std::string> f) {
    f.insert(f.end(), kNoFlush.begin(), kNoFlush.end());
    return f;
  };
  Node a(dir_.path() + "/a", flags({"-cluster.preset", "local"}));
  ASSERT_TRUE(a.WaitHealthy()) << a.proc().Stderr();
  auto b = std::make_unique<Node>(dir_.path() + "/b", flags({"-cluster.preset", "local", "-peer", a.Cluster()}));
  ASSERT_TRUE(b->WaitHealthy()) << b->proc().Stderr();
  ASSERT_TRUE(WaitFor([&] { return a.AliveMembers() == 2 && b->AliveMembers() == 2; }, std::chrono::seconds(10)));

  Process stream({OklogBinary(), "stream", "-store", a.Store(), "-q", "MATCH"}, dir_.path(), "stream");
  ASSERT_TRUE(WaitFor([&] { return a.Metric("oklog_stream_peer_streams") == 1 && b->Metric("oklog_stream_subscribers") == 1; },
                      std::chrono::seconds(5)))
      << stream.Stderr();

  std::string expected;
  std::vector<double> latencies_ms;
  auto send = [&](Node& to, const std::string& line) {
    Forwarder fwd(to.dir(), to.Fast());
    const double flushed = to.FlushedSegments();  // each forwarder's segment is flushed at its close
    ASSERT_GE(flushed, 0);
    fwd.Send("other " + line);
    expected += "MATCH " + line + "\n";
    auto t0 = Clock::now();
    fwd.Send("MATCH " + line);
    double ms = MsUntil([&] { return stream.Stdout().size(); }, expected.size(), kArrival);
    if (ms >= 0) latencies_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    EXPECT_GE(ms, 0) << "\"" << line << "\" did not arrive; stdout:\n" << stream.Stdout();
    EXPECT_EQ(to.FlushedSegments(), flushed) << "\"" << line << "\" was streamed before its segment was flushed";
    EXPECT_EQ(fwd.Close(), 0);
  };
  send(*b, "from b 1");
  send(a, "from a 1");
  send(*b, "from b 2");
  EXPECT_EQ(stream.Stdout(), expected);

  // B leaves: A stops streaming from it; the client's stream goes on.
  b->proc().Signal(SIGTERM);
  EXPECT_EQ(b->proc().Wait(std::chrono::seconds(20)), 0) << b->proc().Stderr();
  EXPECT_TRUE(WaitFor([&] { return a.Metric("oklog_stream_peer_streams") == 0; }, std::chrono::seconds(5)));
  send(a, "from a 2");

  // C joins with only A as its seed: within about a second A streams from it too.
  Node c(dir_.path() + "/c", flags({"-cluster.preset", "local", "-peer", a.Cluster()}));
  ASSERT_TRUE(c.WaitHealthy()) << c.proc().Stderr();
  auto joined = Clock::now();
  EXPECT_TRUE(WaitFor([&] { return a.Metric("oklog_stream_peer_streams") == 1 && c.Metric("oklog_stream_subscribers") == 1; },
                      std::chrono::seconds(10)));
  std::printf("a joining peer was streamed from %.0f ms after it was healthy\n",
              std::chrono::duration<double, std::milli>(Clock::now() - joined).count());
  send(c, "from c 1");
  EXPECT_EQ(stream.Stdout(), expected) << "each record once, nothing else";
  std::printf("forward stdin -> stream stdout across nodes, %zu lines: p50 %.1f ms, max %.1f ms\n",
              latencies_ms.size(), Percentile(latencies_ms, 0.5), Percentile(latencies_ms, 1.0));
  EXPECT_EQ(latencies_ms.size(), 5u) << "every line arrived";

  // The client leaves: every node lets go at once.
  stream.Signal(SIGKILL);
  EXPECT_EQ(stream.Wait(std::chrono::seconds(5)), 128 + SIGKILL);
  EXPECT_TRUE(WaitFor([&] { return a.Metric("oklog_stream_subscribers") == 0 && a.Metric("oklog_stream_peer_streams") == 0 &&
                                   c.Metric("oklog_stream_subscribers") == 0; },
                      std::chrono::seconds(3)));

  for (Node* n : {&c, &a}) {
    n->proc().Signal(SIGTERM);
    EXPECT_EQ(n->proc().Wait(std::chrono::seconds(20)), 0) << n->proc().Stderr();
  }
}

}  // namespace
}  // namespace oklog
