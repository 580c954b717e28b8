// segbench: measures the store segment format on a corpus of ULID-prefixed lines (corpus_gen
// BYTES 1). Not a test. Usage:
//   segbench CORPUS DIR [TOPIC]
// Sorts the lines by ULID, inserts TOPIC (default "default") after the ULID, writes
// DIR/records.txt (the exact record text, for `lz4 -1` comparisons) and a segment in DIR, then
// reports write speed, sizes, filter bytes, filter false-positive rates, and decompress+scan
// speed with and without block pruning.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "segments/segment_file.h"
#include "segments/segment_file_internal.h"

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

std::string Slurp(const char* path) {
  std::string s;
  int fd = ::open(path, O_RDONLY);
  if (fd < 0) return s;
  struct stat st;
  ::fstat(fd, &st);
  s.resize(static_cast<size_t>(st.st_size));
  size_t off = 0;
  while (off < s.size()) {
    ssize_t r = ::pread(fd, s.data() + off, s.size() - off, static_cast<off_t>(off));
    if (r <= 0) break;
    off += static_cast<size_t>(r);
  }
  ::close(fd);
  s.resize(off);
  return s;
}

// Counts blocks that may match and blocks that do contain the literal (case-sensitive), and
// returns the scan time over the blocks that may match.
struct QueryStats {
  size_t may = 0, has = 0, blocks = 0;
  double seconds = 0;
  uint64_t scanned = 0;
};
QueryStats RunQuery(const oklog::SegmentReader& r, std::string_view lit, bool prune) {
  QueryStats st;
  oklog::BlockFilterQuery q;
  q.RequireLiteral(lit);
  std::string block;
  auto t0 = Clock::now();
  for (size_t i = 0; i < r.blocks().size(); ++i) {
    ++st.blocks;
    if (prune && !r.BlockMayMatch(i, q)) continue;
    ++st.may;
    if (!r.ReadBlock(i, &block).ok()) std::abort();
    st.scanned += block.size();
    if (memmem(block.data(), block.size(), lit.data(), lit.size()) != nullptr) ++st.has;
  }
  st.seconds = Seconds(t0);
  return st;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: segbench CORPUS DIR [TOPIC]\n");
    return 2;
  }
  const std::string dir = argv[2];
  const std::string topic = argc > 3 ? argv[3] : "default";
  std::string corpus = Slurp(argv[1]);
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < corpus.size();) {
    const char* lf = static_cast<const char*>(std::memchr(corpus.data() + pos, '\n', corpus.size() - pos));
    const size_t end = lf ? static_cast<size_t>(lf - corpus.data()) + 1 : corpus.size();
    if (end - pos > 28) lines.emplace_back(corpus.data() + pos, end - pos);
    pos = end;
  }
  std::stable_sort(lines.begin(), lines.end(), [](std::string_view a, std::string_view b) { return a.substr(0, 26) < b.substr(0, 26); });
  lines.erase(std::unique(lines.begin(), lines.end(), [](std::string_view a, std::string_view b) { return a.substr(0, 26) == b.substr(0, 26); }),
              lines.end());
  std::string records;
  records.reserve(corpus.size() + lines.size() * (topic.size() + 1));
  std::vector<size_t> starts;
  starts.reserve(lines.size() + 1);
  for (auto l : lines) {
    starts.push_back(records.size());
    records.append(l.substr(0, 27));
    records.append(topic);
    records.push_back(' ');
    records.append(l.substr(27));
    if (records.back() != '\n') records.push_back('\n');
  }
  starts.push_back(records.size());
  std::string().swap(corpus);
  {
    FILE* f = std::fopen((dir + "/records.txt").c_str(), "wb");
    std::fwrite(records.data(), 1, records.size(), f);
    std::fclose(f);
  }

  {
    // The gram filter alone, as the writer drives it (Reset per 256 KiB, Finish per block).
    oklog::segment_internal::GramFilterBuilder fb;
    std::string filter;
    auto f0 = Clock::now();
    size_t in_block = 0;
    fb.Reset(256 << 10);
    for (size_t i = 0; i + 1 < starts.size(); ++i) {
      const size_t n = starts[i + 1] - starts[i];
      fb.AddPayload(records.data() + starts[i] + 27, n - 27);
      in_block += n;
      if (in_block >= (256 << 10)) {
        fb.Finish(80 << 10, &filter);
        fb.Reset(256 << 10);
        in_block = 0;
      }
    }
    const double fs = Seconds(f0);
    std::printf("gram filter build alone: %.3f s = %.2f GB/s of record text\n", fs, records.size() / 1e9 / fs);
  }
  auto t0 = Clock::now();
  auto w = oklog::SegmentWriter::Create(dir, {});
  if (!w.ok()) return std::fprintf(stderr, "%s\n", w.status().ToString().c_str()), 1;
  for (size_t i = 0; i + 1 < starts.size(); ++i) {
    oklog::Status s = (*w)->Append(std::string_view(records).substr(starts[i], starts[i + 1] - starts[i]));
    if (!s.ok()) return std::fprintf(stderr, "%s\n", s.ToString().c_str()), 1;
  }
  auto path = (*w)->Finish();
  if (!path.ok()) return std::fprintf(stderr, "%s\n", path.status().ToString().c_str()), 1;
  const double write_s = Seconds(t0);
  auto r = oklog::SegmentReader::Open(*path);
  if (!r.ok()) return std::fprintf(stderr, "%s\n", r.status().ToString().c_str()), 1;
  const auto& seg = **r;

  uint64_t comp = 0, filt = 0, empty = 0;
  for (const auto& b : seg.blocks()) {
    comp += b.compressed_size;
    filt += b.filter.size();
    empty += b.filter.empty();
  }
  std::printf("segment %s\n", path->c_str());
  std::printf("records %llu, raw %.1f MB, file %.1f MB (ratio %.3f), blocks %zu\n",
              static_cast<unsigned long long>(seg.records()), seg.raw_bytes() / 1e6, seg.file_bytes() / 1e6,
              static_cast<double>(seg.raw_bytes()) / static_cast<double>(seg.file_bytes()), seg.blocks().size());
  std::printf("write (compress+filter+fdatasync) %.2f s = %.0f MB/s raw\n", write_s, seg.raw_bytes() / 1e6 / write_s);
  std::printf("filter bytes %llu = %.2f%% of block bytes, %.0f per block, %llu blocks unfiltered; index+footer %.2f%% of file\n",
              static_cast<unsigned long long>(filt), 100.0 * filt / comp,
              static_cast<double>(filt) / seg.blocks().size(), static_cast<unsigned long long>(empty),
              100.0 * (seg.file_bytes() - comp) / seg.file_bytes());

  // False positives: random absent 16-hex needles (13 grams each), and 8-char ones.
  std::mt19937_64 rng(42);
  for (size_t len : {size_t{16}, size_t{12}, size_t{8}, size_t{6}}) {
    size_t may = 0, total = 0;
    for (int n = 0; n < 200; ++n) {
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(rng()));
      oklog::BlockFilterQuery q;
      q.RequireLiteral(std::string_view(hex, len));
      for (size_t i = 0; i < seg.blocks().size(); ++i) may += seg.BlockMayMatch(i, q);
      total += seg.blocks().size();
    }
    std::printf("absent %zu-hex-char needle: %.4f%% of blocks may match (false positives)\n", len, 100.0 * may / total);
  }

  // Present needles: request ids from random records.
  {
    size_t may = 0, has = 0, n = 0;
    for (int k = 0; k < 50; ++k) {
      const size_t i = rng() % (starts.size() - 1);
      std::string_view rec(records.data() + starts[i], starts[i + 1] - starts[i]);
      size_t p = rec.find("\"request_id\":\"");
      if (p == std::string_view::npos) continue;
      auto st = RunQuery(seg, rec.substr(p + 14, 16), true);
      may += st.may;
      has += st.has;
      ++n;
    }
    std::printf("one-hit request id: %.2f blocks read per query (%.2f hold it), %zu blocks\n", double(may) / n,
                double(has) / n, seg.blocks().size());
  }

  for (int rep = 0; rep < 2; ++rep) {
    for (bool prune : {false, true}) {
      for (std::string_view lit : {std::string_view("deadbeefcafe"), std::string_view("upstream timeout")}) {
        auto st = RunQuery(seg, lit, prune);
        std::printf("%-18s prune=%d: read %zu/%zu blocks, %.3f s, %.2f GB/s of raw segment (%.2f GB/s of bytes decompressed)\n",
                    std::string(lit).c_str(), prune, st.may, st.blocks, st.seconds, seg.raw_bytes() / 1e9 / st.seconds,
                    st.scanned / 1e9 / st.seconds);
      }
    }
  }
  return 0;
}
