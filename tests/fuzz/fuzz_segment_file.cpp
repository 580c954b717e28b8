// Store segment files (segments/segment_file.h, segment_format.h): the checks of bytes from a
// peer (CheckSegmentImage), the reader (SegmentReader through an in-memory Env: footer, index,
// blocks, LZ4 frames, records, filters) and `oklog segment cat|verify|stat`
// (segments/segment_tool.h). The first byte picks the case:
//   0  the bytes as a file
//   1  the bytes with their checksums made right (footer, index, and every block once the
//      index decodes), so the fuzzer gets past the CRCs into the index, LZ4 and record checks
//   2  records: each input line L becomes "ULID L\n" with increasing ULIDs, encoded by
//      SegmentEncoder; the image must check, open, verify and read back as exactly the
//      records the encoder took
//   3  the bytes as a file on disk, through the three `oklog segment` tools
// Invariants: CheckSegmentImage ok => the reader opens it with the same blocks; Verify ok =>
// every block reads, its records' topics and grams pass BlockMayMatch (a filter never causes
// a miss), and `oklog segment verify` says OK.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/fs/env.h"
#include "fuzz_check.h"
#include "segments/crc32c.h"
#include "segments/record_merge.h"
#include "segments/segment_file.h"
#include "segments/segment_file_internal.h"
#include "segments/segment_format.h"
#include "segments/segment_tool.h"

using namespace oklog;
namespace sf = segment_format;
namespace si = segment_internal;

namespace {

// An Env holding one read-only file in memory; everything else fails.
class MemEnv final : public Env {
 public:
  explicit MemEnv(std::string_view bytes) : bytes_(bytes) {}

  class File final : public RandomAccessFile {
   public:
    File(std::string_view bytes, std::string path) : bytes_(bytes), path_(std::move(path)) {}
    Status Read(uint64_t offset, size_t n, char* dst, size_t* got) const override {
      *got = 0;
      if (offset >= bytes_.size()) return Status::Ok();
      *got = std::min<uint64_t>(n, bytes_.size() - offset);
      std::memcpy(dst, bytes_.data() + offset, *got);
      return Status::Ok();
    }
    Result<uint64_t> Size() const override { return uint64_t{bytes_.size()}; }
    const std::string& path() const override { return path_; }

   private:
    std::string_view bytes_;
    std::string path_;
  };

  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    return std::unique_ptr<RandomAccessFile>(new File(bytes_, path));
  }
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string&) override { return No(); }
  Status RenameFile(const std::string&, const std::string&) override { return No(); }
  Status RenameNoReplace(const std::string&, const std::string&) override { return No(); }
  Status RemoveFile(const std::string&) override { return No(); }
  Status TruncateFile(const std::string&, uint64_t) override { return No(); }
  Status SetModifiedTime(const std::string&, std::chrono::system_clock::time_point) override { return No(); }
  Status GetChildren(const std::string&, std::vector<std::string>*) override { return No(); }
  Result<FileInfo> GetFileInfo(const std::string&) override { return No(); }
  Status SyncDir(const std::string&) override { return No(); }
  Status CreateDirs(const std::string&) override { return No(); }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string&) override { return No(); }
  Result<uint64_t> FreeBytes(const std::string&) override { return No(); }

 private:
  static Status No() { return Status::IOError("fuzz env: read-only, one file"); }
  std::string_view bytes_;
};

bool SameBlocks(const std::vector<BlockInfo>& a, const std::vector<BlockInfo>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].offset != b[i].offset || a[i].compressed_size != b[i].compressed_size ||
        a[i].raw_size != b[i].raw_size || a[i].records != b[i].records || a[i].crc32c != b[i].crc32c ||
        a[i].first != b[i].first || a[i].last != b[i].last || a[i].topics != b[i].topics ||
        a[i].topics_complete != b[i].topics_complete || a[i].filter != b[i].filter)
      return false;
  }
  return true;
}

// Opens, verifies and reads the file; returns the records' text when it verifies.
std::optional<std::string> ReadAll(std::string_view file) {
  MemEnv env(file);
  Result<SegmentImageInfo> checked = CheckSegmentImage(file);
  auto r = SegmentReader::Open("fuzz.seg", &env);
  if (checked.ok()) {
    FUZZ_CHECK(r.ok());
    FUZZ_CHECK(SameBlocks(checked->blocks, (*r)->blocks()));
    FUZZ_CHECK(checked->records == (*r)->records());
    FUZZ_CHECK(checked->name.low == (*r)->low() && checked->name.high == (*r)->high());
  }
  if (!r.ok()) return std::nullopt;
  const SegmentReader& reader = **r;
  FUZZ_CHECK(!reader.blocks().empty());
  std::string text;
  std::string all;
  bool readable = true;
  for (size_t i = 0; i < reader.blocks().size() && i < 64; ++i) {
    if (!reader.ReadBlock(i, &text).ok()) {
      readable = false;
      continue;
    }
    FUZZ_CHECK(text.size() == reader.blocks()[i].raw_size);
    all += text;
  }
  if (!reader.Verify().ok()) return std::nullopt;
  FUZZ_CHECK(readable);
  // A block that verifies is never excluded for a topic or a gram its records have.
  size_t pos = 0;
  for (size_t i = 0; i < reader.blocks().size(); ++i) {
    const size_t end = pos + reader.blocks()[i].raw_size;
    size_t checked_records = 0;
    while (pos < end) {
      const size_t lf = all.find('\n', pos);
      FUZZ_CHECK(lf != std::string::npos && lf < end);
      const std::string_view rec(all.data() + pos, lf + 1 - pos);
      std::string_view topic;
      FUZZ_CHECK(si::ParseRecord(rec, &topic));
      if (checked_records++ < 8) {
        BlockFilterQuery by_topic;
        by_topic.SetTopics({std::string(topic)});
        FUZZ_CHECK(reader.BlockMayMatch(i, by_topic));
        const std::string_view payload = rec.substr(sf::kUlidTextSize + 1);
        BlockFilterQuery by_gram;
        by_gram.RequireLiteral(payload.substr(0, 12));
        by_gram.RequireLiteral(payload.substr(payload.size() > 12 ? payload.size() - 12 : 0));
        FUZZ_CHECK(reader.BlockMayMatch(i, by_gram));
      }
      pos = lf + 1;
    }
    FUZZ_CHECK(pos == end);
  }
  return all;
}

// Rewrites the checksums the fuzzer cannot forge: the footer's and the index's, and, when the
// index decodes, every block's (the index re-encoded with them).
std::string Repaired(std::string file) {
  if (file.size() < sf::kFooterSize + sf::kSkippableHeaderSize) return file;
  char* footer = file.data() + file.size() - sf::kFooterSize;
  auto fix_footer = [&] {
    const uint32_t crc = crc32c::Value(footer, sf::kFooterCrcCoveredBytes);
    std::memcpy(footer + 20, &crc, 4);
  };
  const uint64_t index_offset = si::GetFixed64(footer);
  const uint32_t index_size = si::GetFixed32(footer + 8);
  if (index_offset < sf::kSkippableHeaderSize || index_offset > file.size() ||
      index_size > file.size() - index_offset || index_offset + index_size + sf::kFooterSize != file.size()) {
    fix_footer();
    return file;
  }
  const uint64_t frame_start = index_offset - sf::kSkippableHeaderSize;
  const std::string_view index(file.data() + index_offset, index_size);
  std::vector<BlockInfo> blocks;
  if (!si::DecodeIndex(index, frame_start, &blocks).ok()) {
    const uint32_t crc = crc32c::Value(index.data(), index.size());
    std::memcpy(footer + 12, &crc, 4);
    fix_footer();
    return file;
  }
  std::vector<std::string> topics;
  for (const auto& b : blocks) topics.insert(topics.end(), b.topics.begin(), b.topics.end());
  std::sort(topics.begin(), topics.end());
  topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
  std::vector<si::PendingBlock> pending;
  for (const auto& b : blocks) {
    si::PendingBlock p;
    p.compressed_size = b.compressed_size;
    p.raw_size = b.raw_size;
    p.records = b.records;
    p.crc32c = crc32c::Value(file.data() + b.offset, b.compressed_size);
    p.first = b.first;
    p.last = b.last;
    p.flags = b.topics_complete ? 0 : sf::kBlockTopicsIncomplete;
    for (const auto& t : b.topics)
      p.topic_ids.push_back(static_cast<uint32_t>(std::lower_bound(topics.begin(), topics.end(), t) - topics.begin()));
    p.filter = b.filter;
    pending.push_back(std::move(p));
  }
  std::string out = file.substr(0, frame_start);
  std::string new_index;
  si::EncodeIndex(topics, pending, &new_index);
  si::EncodeIndexFrameHeader(static_cast<uint32_t>(new_index.size()), &out);
  si::Footer f;
  f.index_offset = out.size();
  f.index_size = static_cast<uint32_t>(new_index.size());
  f.index_crc32c = crc32c::Value(new_index.data(), new_index.size());
  out += new_index;
  si::EncodeFooter(f, &out);
  return out;
}

void Records(fuzz::Input& in) {
  SegmentWriterOptions opt;
  opt.block_target_bytes = sf::kMinBlockTargetBytes << (in.Byte() % 4);
  auto enc = SegmentEncoder::Create(opt);
  FUZZ_CHECK(enc.ok());
  const uint64_t base_ms = in.U64() % (Ulid::kMaxUnixMs - 1000000);
  std::string taken;
  Ulid first, last;
  uint64_t i = 0;
  while (!in.empty()) {
    const std::string_view line = in.Until('\n');
    const Ulid u = Ulid::FromParts(base_ms + i / 7, 0, i);
    ++i;
    const std::string rec = u.ToString() + " " + std::string(line) + "\n";
    if ((*enc)->Append(rec).ok()) {
      if (taken.empty()) first = u;
      last = u;
      taken += rec;
    }
  }
  Result<SegmentImage> image = (*enc)->Finish();
  if (taken.empty()) {
    FUZZ_CHECK(image.status().code() == Code::kNotFound);
    return;
  }
  FUZZ_CHECK(image.ok());
  FUZZ_CHECK(image->name.low == first && image->name.high == last);
  FUZZ_CHECK(CheckSegmentImage(image->bytes).ok());
  std::optional<std::string> back = ReadAll(image->bytes);
  FUZZ_CHECK(back && *back == taken);
}

void Tools(std::string_view file) {
  static const std::string path = [] {
    char tmpl[] = "/tmp/oklog-fuzz-segment-XXXXXX";
    FUZZ_CHECK(mkdtemp(tmpl) != nullptr);
    return std::string(tmpl) + "/fuzz.seg";
  }();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(file.data(), static_cast<std::streamsize>(file.size()));
  }
  std::ostringstream cat, verify, stat;
  const int cat_rc = SegmentCat(path, cat);
  const int verify_rc = SegmentVerify(path, verify);
  (void)SegmentStat(path, stat);
  std::optional<std::string> text = ReadAll(file);
  if (verify_rc == 0) {
    FUZZ_CHECK(text.has_value());
    FUZZ_CHECK(cat_rc == 0 && cat.str() == *text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  switch (in.Byte() % 4) {
    case 0: (void)ReadAll(in.Rest()); break;
    case 1: (void)ReadAll(Repaired(std::string(in.Rest()))); break;
    case 2: Records(in); break;
    case 3: Tools(in.Rest()); break;
  }
  return 0;
}
