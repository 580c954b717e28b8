// Tests for src/segments/segment_file*.cpp and crc32c.cpp: the store segment format.
#include "segments/segment_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "segments/crc32c.h"
#include "segments/segment_format.h"
#include "segments/segment_image_util.h"
#include "segments/segment_tool.h"

namespace oklog {
namespace {

namespace fs = std::filesystem;
namespace sf = segment_format;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "segfile-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteFile(const std::string& path, std::string_view data) {
  fs::remove(path);  // a fresh file: rewriting a truncated one makes ext4 flush it on close
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Builds records "ULID topic line\n" with increasing ULIDs.
class RecordMaker {
 public:
  explicit RecordMaker(uint64_t seed = 1) : rng_(seed) {}
  std::string Make(std::string_view topic, std::string_view line) {
    ms_ += 1 + rng_() % 3;
    std::string r = Ulid::FromParts(ms_, static_cast<uint16_t>(rng_()), rng_()).ToString();
    r += ' ';
    r += topic;
    r += ' ';
    r += line;
    r += '\n';
    return r;
  }
  // A line of n random bytes, none of them LF.
  std::string RandomLine(size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) {
      c = static_cast<char>(rng_() % 256);
      if (c == '\n') c = '\r';
    }
    return s;
  }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
  uint64_t ms_ = 1700000000000ull;
};

Result<std::string> WriteSegment(const std::string& dir, const std::vector<std::string>& records,
                                 SegmentWriterOptions opts = {}) {
  auto w = SegmentWriter::Create(dir, opts);
  if (!w.ok()) return w.status();
  for (const auto& r : records) {
    Status s = (*w)->Append(r);
    if (!s.ok()) return s;
  }
  return (*w)->Finish();
}

std::string ReadAll(const SegmentReader& r) {
  std::string all, block;
  for (size_t i = 0; i < r.blocks().size(); ++i) {
    Status s = r.ReadBlock(i, &block);
    EXPECT_TRUE(s.ok()) << s.ToString();
    all += block;
  }
  return all;
}

std::string Concat(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x;
  return s;
}

size_t FileCount(const std::string& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

// ---- crc32c ----

TEST(Crc32c, MatchesKnownVectors) {
  EXPECT_EQ(crc32c::Value("123456789", 9), 0xE3069283u);
  std::string zeros(32, '\0'), ones(32, '\xff'), up(32, 0), down(32, 0);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(crc32c::Value(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c::Value(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c::Value(up.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(crc32c::Value(down.data(), 32), 0x113FDB5Cu);
  EXPECT_EQ(crc32c::Value("", 0), 0u);
}

TEST(Crc32c, HardwareAndSoftwareAgreeAtEveryLengthAndAlignment) {
  std::mt19937_64 rng(7);
  std::string buf(1000, '\0');
  for (auto& c : buf) c = static_cast<char>(rng());
  for (size_t off = 0; off < 9; ++off)
    for (size_t n = 0; n + off <= buf.size(); n += 1 + n / 8) {
      const uint32_t sw = crc32c::ExtendSoftware(0, buf.data() + off, n);
      EXPECT_EQ(crc32c::Value(buf.data() + off, n), sw);
      if (crc32c::HasHardware()) {
        EXPECT_EQ(crc32c::ExtendHardware(0, buf.data() + off, n), sw);
      }
    }
}

TEST(Crc32c, InterleavedStripesAgreeWithSoftwareAroundEveryStripeBoundary) {
  // The hardware path checksums 3 x 8192-byte and 3 x 256-byte stripes side by side and joins
  // them; lengths on both sides of those sizes, at odd alignments and with a non-zero start.
  std::mt19937_64 rng(11);
  std::string buf(4 * 3 * 8192 + 64, '\0');
  for (auto& c : buf) c = static_cast<char>(rng());
  std::vector<size_t> lengths = {767, 768, 769, 775, 776, 1535, 1536, 1544, 24575, 24576, 24577, 24584,
                                 25343, 25344, 25345, 49152, 49152 + 768 + 13, 72000, 3 * 3 * 8192 + 5};
  for (int i = 0; i < 40; ++i) lengths.push_back(rng() % (buf.size() - 16));
  for (size_t off : {0, 1, 3, 7, 8}) {
    for (size_t n : lengths) {
      if (off + n > buf.size()) continue;
      const uint32_t sw = crc32c::ExtendSoftware(0x12345678u, buf.data() + off, n);
      EXPECT_EQ(crc32c::Extend(0x12345678u, buf.data() + off, n), sw) << "off " << off << " n " << n;
      if (crc32c::HasHardware()) {
        EXPECT_EQ(crc32c::ExtendHardware(0x12345678u, buf.data() + off, n), sw) << "off " << off << " n " << n;
      }
    }
  }
}

TEST(Crc32c, ExtendEqualsWholeValue) {
  const std::string s = "hello, segment world";
  for (size_t k = 0; k <= s.size(); ++k)
    EXPECT_EQ(crc32c::Extend(crc32c::Value(s.data(), k), s.data() + k, s.size() - k), crc32c::Value(s.data(), s.size()));
}

// ---- names ----

TEST(SegmentName, RoundTripsAndRejectsOtherNames) {
  SegmentName n{Ulid::FromParts(1700000000000ull, 1, 2), Ulid::FromParts(1700000000500ull, 3, 4)};
  auto p = SegmentName::Parse(n.FileName());
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->low, n.low);
  EXPECT_EQ(p->high, n.high);
  EXPECT_FALSE(SegmentName::Parse("x.seg"));
  EXPECT_FALSE(SegmentName::Parse(n.FileName() + ".tmp"));
  EXPECT_FALSE(SegmentName::Parse(SegmentName{n.high, n.low}.FileName()));  // high < low
  std::string lower = n.FileName();
  lower[3] = static_cast<char>(std::tolower(lower[3]));
  if (lower != n.FileName()) {
    EXPECT_FALSE(SegmentName::Parse(lower));
  }
}

// ---- writer and reader ----

TEST(SegmentFile, RoundTripsRecordsOfAnyBytes) {
  TempDir dir;
  RecordMaker m(3);
  std::vector<std::string> recs;
  for (int i = 0; i < 3000; ++i) {
    std::string line = m.RandomLine(m.rng()() % 300);
    if (i % 7 == 0) line += std::string("%s%d\0\xff\xfe\r", 8);
    recs.push_back(m.Make(i % 5 == 0 ? "alpha" : "beta", line));
  }
  auto path = WriteSegment(dir.path(), recs, {.block_target_bytes = 64 << 10});
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  auto r = SegmentReader::Open(*path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT((*r)->blocks().size(), 3u);
  EXPECT_EQ(ReadAll(**r), Concat(recs));
  EXPECT_EQ((*r)->records(), recs.size());
  EXPECT_EQ((*r)->raw_bytes(), Concat(recs).size());
  EXPECT_TRUE((*r)->Verify().ok());
  EXPECT_EQ(fs::path(*path).filename().string(),
            (SegmentName{*Ulid::Parse(recs.front().substr(0, 26)), *Ulid::Parse(recs.back().substr(0, 26))}).FileName());
  EXPECT_EQ((*r)->file_bytes(), fs::file_size(*path));
  EXPECT_EQ(FileCount(dir.path()), 1u);  // no temporary left behind
}

TEST(SegmentFile, ReadBlockReplacesWhateverTheBufferHeld) {
  // Queries hand ReadBlock a recycled buffer still holding an earlier block (no zero fill):
  // longer, shorter, or garbage, the result is exactly the block.
  TempDir dir;
  RecordMaker m(6);
  std::vector<std::string> recs;
  for (int i = 0; i < 2000; ++i) recs.push_back(m.Make("t", m.RandomLine(m.rng()() % 400)));
  auto path = WriteSegment(dir.path(), recs, {.block_target_bytes = 16 << 10});
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  auto r = SegmentReader::Open(*path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const size_t n = (*r)->blocks().size();
  ASSERT_GT(n, 4u);
  std::vector<std::string> fresh(n);
  for (size_t i = 0; i < n; ++i) ASSERT_TRUE((*r)->ReadBlock(i, &fresh[i]).ok());
  std::string reused(1 << 20, 'x');
  for (size_t k = 0; k < 3 * n; ++k) {
    const size_t i = (k * 7) % n;
    ASSERT_TRUE((*r)->ReadBlock(i, &reused).ok());
    ASSERT_EQ(reused, fresh[i]) << "block " << i;
    EXPECT_EQ(reused.size(), (*r)->blocks()[i].raw_size);
  }
  EXPECT_EQ(Concat(fresh), Concat(recs));
}

TEST(SegmentFile, RecordsFromOneByteLinesToTwoMebibytes) {
  TempDir dir;
  RecordMaker m(4);
  std::vector<std::string> recs;
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{255 << 10}, size_t{256 << 10}, size_t{1}, size_t{2 << 20},
                   size_t{3}, size_t{300 << 10}, size_t{7}})
    recs.push_back(m.Make("t", m.RandomLine(n)));
  auto path = WriteSegment(dir.path(), recs);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  auto r = SegmentReader::Open(*path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(ReadAll(**r), Concat(recs));
  EXPECT_TRUE((*r)->Verify().ok());
  for (const auto& b : (*r)->blocks())
    EXPECT_TRUE(b.raw_size <= (256u << 10) || b.records == 1) << b.raw_size;
}

TEST(SegmentFile, Lz4CommandLinePrintsExactlyTheRecords) {
  TempDir dir;
  RecordMaker m(5);
  std::vector<std::string> recs;
  for (int i = 0; i < 5000; ++i) recs.push_back(m.Make("web", "GET /x?id=" + std::to_string(i) + " 100% done \x01\xff"));
  recs.push_back(m.Make("big", m.RandomLine(700 << 10)));
  auto path = WriteSegment(dir.path(), recs);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  const std::string out = dir.path() + "/out.txt";
  ASSERT_EQ(std::system(("lz4 -dc '" + *path + "' > '" + out + "' 2>/dev/null").c_str()), 0);
  EXPECT_EQ(ReadFile(out), Concat(recs));
}

TEST(SegmentFile, UnsortedOrDuplicateUlidIsRejectedAndNotWritten) {
  TempDir dir;
  RecordMaker m(6);
  std::string a = m.Make("t", "a"), b = m.Make("t", "b"), c = m.Make("t", "c");
  auto w = SegmentWriter::Create(dir.path(), {});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(b).ok());
  EXPECT_EQ((*w)->Append(a).code(), Code::kInvalidArgument);
  EXPECT_EQ((*w)->Append(b).code(), Code::kInvalidArgument);
  ASSERT_TRUE((*w)->Append(c).ok());
  auto path = (*w)->Finish();
  ASSERT_TRUE(path.ok());
  auto r = SegmentReader::Open(*path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ReadAll(**r), b + c);
}

TEST(SegmentFile, MalformedRecordsAreRejected) {
  TempDir dir;
  auto w = SegmentWriter::Create(dir.path(), {});
  ASSERT_TRUE(w.ok());
  const std::string u = Ulid::FromParts(1700000000000ull, 0, 1).ToString();
  for (const std::string& bad : {u + " t line", u + " t li\nne\n", u + "  line\n", u + " tline\n", u + "xt line\n",
                                 u.substr(1) + "  t line\n", std::string("0") + u.substr(1, 24) + "i t x\n", std::string("")})
    EXPECT_EQ((*w)->Append(bad).code(), Code::kInvalidArgument) << bad;
  EXPECT_EQ((*w)->records(), 0u);
}

TEST(SegmentFile, ExistingSegmentIsNeverOverwritten) {
  TempDir dir;
  RecordMaker m(7);
  std::vector<std::string> recs = {m.Make("t", "one"), m.Make("t", "two")};
  auto first = WriteSegment(dir.path(), recs);
  ASSERT_TRUE(first.ok());
  const std::string before = ReadFile(*first);
  auto w = SegmentWriter::Create(dir.path(), {.block_target_bytes = 4096, .lz4_acceleration = 8});
  ASSERT_TRUE(w.ok());
  for (const auto& r : recs) ASSERT_TRUE((*w)->Append(r).ok());
  auto second = (*w)->Finish();
  EXPECT_EQ(second.status().code(), Code::kAlreadyExists);
  EXPECT_EQ(ReadFile(*first), before);
  EXPECT_EQ(FileCount(dir.path()), 1u);
}

TEST(SegmentFile, EmptyWriterFinishesWithNotFoundAndLeavesNothing) {
  TempDir dir;
  auto w = SegmentWriter::Create(dir.path(), {});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->Finish().status().code(), Code::kNotFound);
  EXPECT_EQ(FileCount(dir.path()), 0u);
  auto w2 = SegmentWriter::Create(dir.path(), {});
  ASSERT_TRUE(w2.ok());
  EXPECT_EQ(FileCount(dir.path()), 1u);
  w2->reset();
  EXPECT_EQ(FileCount(dir.path()), 0u);  // an unfinished writer removes its temporary
}

TEST(SegmentFile, ReadersOnSeveralThreadsShareOneFile) {
  TempDir dir;
  RecordMaker m(8);
  std::vector<std::string> recs;
  for (int i = 0; i < 20000; ++i) recs.push_back(m.Make("t", m.RandomLine(60)));
  auto path = WriteSegment(dir.path(), recs, {.block_target_bytes = 32 << 10});
  ASSERT_TRUE(path.ok());
  auto r = SegmentReader::Open(*path);
  ASSERT_TRUE(r.ok());
  const std::string want = Concat(recs);
  std::vector<std::thread> ts;
  std::vector<std::string> got(4);
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) got[t] = ReadAll(**r);
    });
  for (auto& t : ts) t.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

// ---- damage ----

// A small segment of several blocks, for the damage tests.
std::string SmallSegment(const std::string& dir) {
  RecordMaker m(9);
  std::vector<std::string> recs;
  for (int i = 0; i < 40; ++i) recs.push_back(m.Make(i % 2 ? "odd" : "even", "line " + std::to_string(i) + m.RandomLine(150)));
  auto path = WriteSegment(dir, recs, {.block_target_bytes = 4096});
  EXPECT_TRUE(path.ok());
  return *path;
}

// Open, then Verify: the first failure's code, or kOk.
Code OpenAndVerify(const std::string& path) {
  auto r = SegmentReader::Open(path);
  if (!r.ok()) return r.status().code();
  return (*r)->Verify().code();
}

TEST(SegmentFileDamage, TruncationAtEveryLengthIsCorruption) {
  TempDir dir;
  const std::string path = SmallSegment(dir.path());
  const std::string data = ReadFile(path);
  ASSERT_GT(data.size(), 1000u);
  ASSERT_EQ(OpenAndVerify(path), Code::kOk);
  const std::string victim = dir.path() + "/victim";
  for (size_t len = 0; len < data.size(); ++len) {
    WriteFile(victim, std::string_view(data).substr(0, len));
    ASSERT_EQ(OpenAndVerify(victim), Code::kCorruption) << "length " << len;
  }
}

TEST(SegmentFileDamage, FlippedByteAtEveryPositionIsCorruption) {
  TempDir dir;
  const std::string path = SmallSegment(dir.path());
  const std::string data = ReadFile(path);
  const std::string victim = dir.path() + "/victim";
  for (size_t pos = 0; pos < data.size(); ++pos) {
    for (uint8_t mask : {0x01, 0x80}) {
      std::string bad = data;
      bad[pos] = static_cast<char>(bad[pos] ^ mask);
      WriteFile(victim, bad);
      ASSERT_EQ(OpenAndVerify(victim), Code::kCorruption) << "position " << pos << " mask " << int{mask};
    }
  }
}

// About five 4 KiB blocks of random-byte records.
std::string FiveBlockSegment(const std::string& dir) {
  RecordMaker m(11);
  std::vector<std::string> recs;
  for (int i = 0; i < 100; ++i) recs.push_back(m.Make("t", "line " + std::to_string(i) + m.RandomLine(150)));
  auto path = WriteSegment(dir, recs, {.block_target_bytes = 4096});
  EXPECT_TRUE(path.ok());
  return *path;
}

// A flipped byte inside block k's frame fails that block alone: the file opens (footer and index
// have their own checksums), VerifyBlock and ReadBlock of k are Corruption, every other block
// reads and verifies. A flipped byte in the index frame or footer fails Open (the whole file).
TEST(SegmentFileDamage, FlippedByteInABlockFailsThatBlockAndInTheIndexTheWholeFile) {
  TempDir dir;
  const std::string path = FiveBlockSegment(dir.path());
  const std::string data = ReadFile(path);
  auto good = SegmentReader::Open(path);
  ASSERT_TRUE(good.ok());
  const std::vector<BlockInfo> blocks = (*good)->blocks();
  ASSERT_GE(blocks.size(), 3u);
  const uint64_t blocks_end = blocks.back().offset + blocks.back().compressed_size;
  const std::string victim = dir.path() + "/victim";
  std::string scratch;
  for (size_t pos = 0; pos < data.size(); pos += 7) {
    std::string bad = data;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x20);
    WriteFile(victim, bad);
    auto r = SegmentReader::Open(victim);
    if (pos >= blocks_end) {
      ASSERT_FALSE(r.ok()) << "index or footer byte " << pos;
      EXPECT_EQ(r.status().code(), Code::kCorruption);
      continue;
    }
    ASSERT_TRUE(r.ok()) << "block byte " << pos << ": " << r.status().ToString();
    for (size_t k = 0; k < blocks.size(); ++k) {
      const bool hit = pos >= blocks[k].offset && pos < blocks[k].offset + blocks[k].compressed_size;
      EXPECT_EQ((*r)->VerifyBlock(k, &scratch).code(), hit ? Code::kCorruption : Code::kOk)
          << "byte " << pos << " block " << k;
      EXPECT_EQ((*r)->ReadBlock(k, &scratch).code(), hit ? Code::kCorruption : Code::kOk);
    }
    EXPECT_EQ((*r)->Verify().code(), Code::kCorruption);
  }
}

// A block marked bad is not read again (Corruption without I/O); the others read as before; the
// mark counts once however often it is set.
TEST(SegmentFileDamage, AMarkedBlockIsRefusedAndItsNeighboursStillRead) {
  TempDir dir;
  auto r = SegmentReader::Open(FiveBlockSegment(dir.path()));
  ASSERT_TRUE(r.ok());
  ASSERT_GE((*r)->blocks().size(), 3u);
  EXPECT_EQ((*r)->bad_blocks(), 0u);
  EXPECT_TRUE((*r)->MarkBlockBad(1));
  EXPECT_FALSE((*r)->MarkBlockBad(1));
  EXPECT_EQ((*r)->bad_blocks(), 1u);
  EXPECT_TRUE((*r)->BlockBad(1));
  EXPECT_FALSE((*r)->BlockBad(0));
  std::string text = "old";
  Status s = (*r)->ReadBlock(1, &text);
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("marked bad"), std::string::npos) << s.ToString();
  EXPECT_TRUE(text.empty());
  EXPECT_TRUE((*r)->ReadBlock(0, &text).ok());
  EXPECT_TRUE((*r)->ReadBlock(2, &text).ok());
  EXPECT_TRUE((*r)->VerifyBlock(1, &text).ok());  // the bytes are fine: VerifyBlock ignores the mark
}

// Garbage in the index behind valid checksums reaches the decoder itself: it must refuse it
// without crashing, throwing or allocating wildly.
TEST(SegmentFileDamage, IndexGarbageWithValidChecksumsIsCorruptionOrConsistent) {
  TempDir dir;
  const std::string path = SmallSegment(dir.path());
  const std::string data = ReadFile(path);
  const size_t footer = data.size() - sf::kFooterSize;
  uint64_t index_offset;
  uint32_t index_size;
  std::memcpy(&index_offset, data.data() + footer, 8);
  std::memcpy(&index_size, data.data() + footer + 8, 4);
  const std::string victim = dir.path() + "/victim";
  std::mt19937_64 rng(11);
  auto reseal = [&](std::string& d) {
    const uint32_t crc = crc32c::Value(d.data() + index_offset, index_size);
    std::memcpy(d.data() + footer + 12, &crc, 4);
    const uint32_t fcrc = crc32c::Value(d.data() + footer, sf::kFooterCrcCoveredBytes);
    std::memcpy(d.data() + footer + 20, &fcrc, 4);
  };
  for (size_t pos = 0; pos < index_size; ++pos) {
    for (int k = 0; k < 4; ++k) {
      std::string bad = data;
      bad[index_offset + pos] = static_cast<char>(k == 0 ? 0xFF : k == 1 ? 0x00 : k == 2 ? 0x80 : rng());
      reseal(bad);
      WriteFile(victim, bad);
      const Code c = OpenAndVerify(victim);
      // A change the index still describes truthfully (a filter bit set) may verify.
      ASSERT_TRUE(c == Code::kCorruption || c == Code::kOk) << "position " << pos;
    }
  }
}

TEST(SegmentFileDamage, NotASegmentIsCorruption) {
  TempDir dir;
  const std::string victim = dir.path() + "/victim";
  for (const std::string& junk : {std::string(), std::string(100, 'x'), std::string(100000, '\0')}) {
    WriteFile(victim, junk);
    EXPECT_EQ(OpenAndVerify(victim), Code::kCorruption);
  }
  EXPECT_EQ(SegmentReader::Open(dir.path() + "/absent").status().code(), Code::kNotFound);
}

// ---- in-memory segment files: encode once, check, install ----

using testing_image::Encode;
using testing_image::Reassemble;

std::vector<std::string> ManyRecords(uint64_t seed, int n) {
  RecordMaker m(seed);
  std::vector<std::string> recs;
  for (int i = 0; i < n; ++i)
    recs.push_back(m.Make(i % 3 ? "web" : "db", "line " + std::to_string(i) + " " + m.RandomLine(m.rng()() % 200)));
  return recs;
}

TEST(SegmentImage, EncoderBytesAreExactlyTheWrittenFile) {
  TempDir dir;
  RecordMaker m(21);
  std::vector<std::string> recs;
  for (int i = 0; i < 3000; ++i) {
    if (i == 1500) recs.push_back(m.Make("big", m.RandomLine(300 << 10)));  // a block of its own
    recs.push_back(m.Make(i % 3 ? "web" : "db", m.RandomLine(m.rng()() % 200)));
  }
  const SegmentWriterOptions opts{.block_target_bytes = 16 << 10};
  auto path = WriteSegment(dir.path(), recs, opts);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  const SegmentImage image = Encode(recs, opts);
  EXPECT_EQ(image.bytes, ReadFile(*path));
  EXPECT_EQ(image.records, recs.size());
  EXPECT_EQ(image.name.FileName(), fs::path(*path).filename().string());
}

TEST(SegmentImage, EncoderHasTheWritersRecordRules) {
  RecordMaker m(23);
  const std::string a = m.Make("t", "a"), b = m.Make("t", "b");
  auto enc = SegmentEncoder::Create({});
  ASSERT_TRUE(enc.ok());
  ASSERT_TRUE((*enc)->Append(b).ok());
  EXPECT_EQ((*enc)->Append(a).code(), Code::kInvalidArgument);
  EXPECT_EQ((*enc)->Append("not a record\n").code(), Code::kInvalidArgument);
  auto image = (*enc)->Finish();
  ASSERT_TRUE(image.ok());
  EXPECT_EQ(image->records, 1u);
  EXPECT_EQ((*enc)->Append(m.Make("t", "c")).code(), Code::kInvalidArgument);  // spent
  EXPECT_EQ((*enc)->Finish().status().code(), Code::kInvalidArgument);
  auto empty = SegmentEncoder::Create({});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ((*empty)->Finish().status().code(), Code::kNotFound);
  EXPECT_EQ(SegmentEncoder::Create({.block_target_bytes = 1}).status().code(), Code::kInvalidArgument);
}

TEST(SegmentImage, CheckAcceptsAnEncodedFileAndDescribesIt) {
  const std::vector<std::string> recs = ManyRecords(24, 2000);
  const SegmentImage image = Encode(recs, {.block_target_bytes = 8 << 10});
  auto info = CheckSegmentImage(image.bytes);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->name.FileName(), image.name.FileName());
  EXPECT_EQ(info->records, recs.size());
  EXPECT_GT(info->blocks.size(), 4u);
}

TEST(SegmentImage, TruncationAtEveryLengthIsCorruption) {
  const SegmentImage image = Encode(ManyRecords(25, 60), {.block_target_bytes = 4096});
  const std::string_view data = image.bytes;
  for (size_t len = 0; len < data.size(); ++len)
    ASSERT_EQ(CheckSegmentImage(data.substr(0, len)).status().code(), Code::kCorruption) << "length " << len;
  std::string longer = image.bytes + "x";  // trailing garbage moves the footer
  EXPECT_EQ(CheckSegmentImage(longer).status().code(), Code::kCorruption);
}

TEST(SegmentImage, FlippedByteAtEveryPositionIsCorruption) {
  // Every byte is covered: blocks by their checksums, the index by its own, the frame header by
  // its magic and size, the footer by its checksum and magic.
  const SegmentImage image = Encode(ManyRecords(26, 60), {.block_target_bytes = 4096});
  for (size_t pos = 0; pos < image.bytes.size(); ++pos) {
    for (uint8_t mask : {0x01, 0x80}) {
      std::string bad = image.bytes;
      bad[pos] = static_cast<char>(bad[pos] ^ mask);
      ASSERT_EQ(CheckSegmentImage(bad).status().code(), Code::kCorruption) << "position " << pos;
    }
  }
}

TEST(SegmentImage, BlocksOutOfOrderOrBackwardRangesAreCorruption) {
  const SegmentImage image = Encode(ManyRecords(27, 200), {.block_target_bytes = 4096});
  auto info = CheckSegmentImage(image.bytes);
  ASSERT_TRUE(info.ok());
  const size_t n = info->blocks.size();
  ASSERT_GE(n, 3u);
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  // The helper itself reproduces a valid file from the blocks in order.
  EXPECT_EQ(Reassemble(image.bytes, *info, order), image.bytes);
  std::swap(order[0], order[1]);
  auto swapped = CheckSegmentImage(Reassemble(image.bytes, *info, order));
  EXPECT_EQ(swapped.status().code(), Code::kCorruption);
  EXPECT_NE(swapped.status().message().find("out of order"), std::string::npos) << swapped.status().ToString();
  std::swap(order[0], order[1]);
  EXPECT_EQ(CheckSegmentImage(Reassemble(image.bytes, *info, order, true)).status().code(), Code::kCorruption);
  // Every checksum valid, but a block repeated: its ranges overlap.
  order.insert(order.begin() + 1, 0);
  EXPECT_EQ(CheckSegmentImage(Reassemble(image.bytes, *info, order)).status().code(), Code::kCorruption);
}

TEST(SegmentImage, FooterOffsetThatWrapsAroundIsCorruption) {
  // offset + index size + footer == file size only modulo 2^64, behind a valid footer checksum:
  // offset 2^64 - 32, index size = the file's size. Must not read outside the bytes.
  const SegmentImage image = Encode(ManyRecords(29, 20));
  std::string bad = image.bytes;
  const size_t footer = bad.size() - sf::kFooterSize;
  const uint64_t offset = ~uint64_t{0} - (sf::kFooterSize - 1);
  const uint32_t index_size = static_cast<uint32_t>(bad.size());
  std::memcpy(bad.data() + footer, &offset, 8);
  std::memcpy(bad.data() + footer + 8, &index_size, 4);
  const uint32_t fcrc = crc32c::Value(bad.data() + footer, sf::kFooterCrcCoveredBytes);
  std::memcpy(bad.data() + footer + 20, &fcrc, 4);
  EXPECT_EQ(CheckSegmentImage(bad).status().code(), Code::kCorruption);
  // The same file on disk: the reader reports it (it once threw out_of_range).
  TempDir dir;
  WriteFile(dir.path() + "/bad.seg", bad);
  EXPECT_EQ(SegmentReader::Open(dir.path() + "/bad.seg").status().code(), Code::kCorruption);
}

TEST(SegmentImage, NotASegmentIsCorruption) {
  for (const std::string& junk : {std::string(), std::string(100, 'x'), std::string(100000, '\0')})
    EXPECT_EQ(CheckSegmentImage(junk).status().code(), Code::kCorruption);
}

TEST(SegmentImage, WriteInstallsUnderItsNameAndNeverReplaces) {
  TempDir dir;
  const std::vector<std::string> recs = ManyRecords(28, 500);
  const SegmentImage image = Encode(recs, {.block_target_bytes = 8 << 10});
  auto path = WriteSegmentImage(dir.path(), image.bytes, image.name);
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  EXPECT_EQ(*path, dir.path() + "/" + image.name.FileName());
  EXPECT_EQ(ReadFile(*path), image.bytes);
  EXPECT_EQ(FileCount(dir.path()), 1u);  // no temporary left behind
  auto r = SegmentReader::Open(*path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE((*r)->Verify().ok());
  EXPECT_EQ(ReadAll(**r), Concat(recs));

  const SegmentImage other = Encode({recs.front(), recs.back()});
  ASSERT_EQ(other.name.FileName(), image.name.FileName());
  EXPECT_EQ(WriteSegmentImage(dir.path(), other.bytes, other.name).status().code(), Code::kAlreadyExists);
  EXPECT_EQ(ReadFile(*path), image.bytes);
  EXPECT_EQ(FileCount(dir.path()), 1u);
  EXPECT_EQ(WriteSegmentImage(dir.path() + "/absent", image.bytes, image.name).status().code(), Code::kIOError);
}

// ---- block filter ----

std::string AsciiLower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return s;
}

// Random text from pieces that stress grams: words, hex, digits, punctuation, UTF-8, case.
std::string RandomText(std::mt19937_64& rng, size_t pieces) {
  static const char* kPieces[] = {"GET", "post", "User", "ERROR", "timeout", "é", "日本語", "Ωmega", "\xff\xfe",
                                  "%s", "\t", "\r", "\"id\":", "::", "a", "Z", "0", "=", "-", "_", "{", "}", "\x01"};
  std::string s;
  for (size_t i = 0; i < pieces; ++i) {
    // Mostly a small vocabulary (so blocks are regular enough to get a filter), some hex ids.
    switch (rng() % 24) {
      case 0: {
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(rng()));
        s += std::string_view(hex, 1 + rng() % 8);
        break;
      }
      case 1: s += std::to_string(rng() % 100); break;
      case 2:
      case 3: s += ' '; break;
      default: s += kPieces[rng() % (sizeof kPieces / sizeof *kPieces)];
    }
  }
  return s;
}

TEST(BlockFilter, NeverCausesAMiss) {
  TempDir dir;
  RecordMaker m(12);
  std::mt19937_64& rng = m.rng();
  std::vector<std::string> recs;
  std::vector<std::string> topics = {"web", "db", "Auth", "x"};
  for (int i = 0; i < 6000; ++i) recs.push_back(m.Make(topics[rng() % topics.size()], RandomText(rng, 1 + rng() % 30)));
  auto path = WriteSegment(dir.path(), recs, {.block_target_bytes = 16384});
  ASSERT_TRUE(path.ok());
  auto r = SegmentReader::Open(*path);
  ASSERT_TRUE(r.ok());
  const SegmentReader& seg = **r;
  ASSERT_GT(seg.blocks().size(), 20u);
  size_t filtered = 0;
  for (const auto& b : seg.blocks()) filtered += !b.filter.empty();
  EXPECT_GT(filtered, seg.blocks().size() / 2);

  // Lower-cased payloads per block, for a brute-force "does this block contain it" check.
  std::vector<std::vector<std::string>> payloads(seg.blocks().size());
  std::string text;
  for (size_t i = 0; i < seg.blocks().size(); ++i) {
    ASSERT_TRUE(seg.ReadBlock(i, &text).ok());
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) payloads[i].push_back(AsciiLower(line.substr(27) + "\n"));
  }
  size_t pruned = 0, checks = 0;
  for (int k = 0; k < 3000; ++k) {
    // A literal from a random record's payload (topic, SP, line, LF), maybe re-cased, or random.
    const std::string& rec = recs[rng() % recs.size()];
    const std::string payload = rec.substr(27);
    std::string lit;
    if (k % 10 == 9) {
      lit = RandomText(rng, 2);
    } else {
      const size_t start = rng() % payload.size();
      lit = payload.substr(start, 1 + rng() % 24);
    }
    if (k % 3 == 1) {
      for (auto& c : lit)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
    }
    BlockFilterQuery q;
    q.RequireLiteral(lit);
    if (k % 5 == 0) q.SetTopics({rec.substr(27, rec.find(' ', 27) - 27), "nope"});
    const std::string needle = AsciiLower(lit);
    for (size_t i = 0; i < seg.blocks().size(); ++i) {
      bool has = false;
      for (const auto& p : payloads[i]) {
        if (p.find(needle) == std::string::npos) continue;
        const std::string topic = p.substr(0, p.find(' '));
        bool topic_ok = q.topics().empty();
        for (const auto& t : q.topics()) topic_ok = topic_ok || AsciiLower(t) == topic;
        // Topics compare exactly: re-check with the exact payload case.
        has = has || topic_ok;
      }
      const bool may = seg.BlockMayMatch(i, q);
      ++checks;
      pruned += !may;
      if (has) {
        ASSERT_TRUE(may) << "block " << i << " holds \"" << lit << "\" but the filter excludes it";
      }
    }
  }
  EXPECT_GT(pruned, checks / 4);  // the filter does prune
}

TEST(BlockFilter, ShortLiteralsAndUnindexableWindowsAddNothing) {
  BlockFilterQuery q;
  q.RequireLiteral("abc");
  EXPECT_TRUE(q.empty());
  q.RequireLiteral("ab\ncd\n");  // every window has an LF before its last byte
  EXPECT_TRUE(q.empty());
  q.RequireLiteral("abcd");
  EXPECT_EQ(q.gram_hashes().size(), 1u);
  q.RequireLiteral("ABCD");  // same gram, lower-cased
  EXPECT_EQ(q.gram_hashes().size(), 1u);
}

TEST(BlockFilter, AbsentNeedleSkipsAlmostEveryBlock) {
  TempDir dir;
  RecordMaker m(13);
  std::vector<std::string> recs;
  for (int i = 0; i < 20000; ++i) {
    char id[17];
    std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(m.rng()()));
    recs.push_back(m.Make("default", std::string("{\"level\":\"info\",\"request_id\":\"") + id + "\",\"msg\":\"request completed\"}"));
  }
  auto path = WriteSegment(dir.path(), recs, {.block_target_bytes = 64 << 10});
  ASSERT_TRUE(path.ok());
  auto r = SegmentReader::Open(*path);
  ASSERT_TRUE(r.ok());
  size_t may = 0, total = 0;
  for (int k = 0; k < 100; ++k) {
    BlockFilterQuery q;
    char id[17];
    std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(m.rng()()));
    q.RequireLiteral(id);
    for (size_t i = 0; i < (*r)->blocks().size(); ++i) may += (*r)->BlockMayMatch(i, q);
    total += (*r)->blocks().size();
  }
  EXPECT_LT(may * 50, total) << may << " of " << total;  // under 2 % false positives
}

TEST(BlockFilter, TopicsPruneBlocksWithoutThem) {
  TempDir dir;
  RecordMaker m(14);
  std::vector<std::string> recs;
  for (const char* t : {"alpha", "beta", "gamma"})
    for (int i = 0; i < 200; ++i) recs.push_back(m.Make(t, "line " + std::to_string(i)));
  auto path = WriteSegment(dir.path(), recs, {.block_target_bytes = 4096});
  ASSERT_TRUE(path.ok());
  auto r = SegmentReader::Open(*path);
  ASSERT_TRUE(r.ok());
  BlockFilterQuery q;
  q.SetTopics({"beta"});
  size_t with_beta = 0;
  for (size_t i = 0; i < (*r)->blocks().size(); ++i) {
    const auto& b = (*r)->blocks()[i];
    const bool has = std::find(b.topics.begin(), b.topics.end(), "beta") != b.topics.end();
    with_beta += has;
    EXPECT_EQ((*r)->BlockMayMatch(i, q), has) << i;
    EXPECT_TRUE(std::is_sorted(b.topics.begin(), b.topics.end()));
  }
  EXPECT_GT(with_beta, 0u);
  EXPECT_LT(with_beta, (*r)->blocks().size());
}

TEST(BlockFilter, TooManyOrTooLongTopicsMakeABlockMatchAnyTopic) {
  TempDir dir;
  RecordMaker m(15);
  std::vector<std::string> recs;
  for (size_t i = 0; i < sf::kMaxTopicsPerBlock + 10; ++i) recs.push_back(m.Make("t" + std::to_string(i), "x"));
  recs.push_back(m.Make(std::string(sf::kMaxTopicBytes + 1, 'L'), "y"));
  auto path = WriteSegment(dir.path(), recs, {.block_target_bytes = 1 << 20});
  ASSERT_TRUE(path.ok());
  auto r = SegmentReader::Open(*path);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ((*r)->blocks().size(), 1u);
  EXPECT_FALSE((*r)->blocks()[0].topics_complete);
  BlockFilterQuery q;
  q.SetTopics({std::string(sf::kMaxTopicBytes + 1, 'L')});
  EXPECT_TRUE((*r)->BlockMayMatch(0, q));
  EXPECT_TRUE((*r)->Verify().ok());
}

// ---- operator tool ----

TEST(SegmentTool, CatVerifyAndStat) {
  TempDir dir;
  RecordMaker m(16);
  std::vector<std::string> recs;
  for (int i = 0; i < 3000; ++i) recs.push_back(m.Make("web", "request " + std::to_string(i) + " done"));
  auto path = WriteSegment(dir.path(), recs, {.block_target_bytes = 16 << 10});
  ASSERT_TRUE(path.ok());
  std::ostringstream cat, verify, stat;
  EXPECT_EQ(SegmentCat(*path, cat), 0);
  EXPECT_EQ(cat.str(), Concat(recs));
  EXPECT_EQ(SegmentVerify(*path, verify), 0);
  EXPECT_NE(verify.str().find("OK"), std::string::npos);
  EXPECT_EQ(SegmentStat(*path, stat), 0);
  EXPECT_NE(stat.str().find("records       3000"), std::string::npos) << stat.str();

  std::string data = ReadFile(*path);
  data[100] = static_cast<char>(data[100] ^ 0x20);
  WriteFile(*path, data);
  std::ostringstream bad;
  EXPECT_EQ(SegmentVerify(*path, bad), 1);
  EXPECT_NE(bad.str().find("Corruption"), std::string::npos) << bad.str();
}

}  // namespace
}  // namespace oklog
