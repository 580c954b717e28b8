// SegmentName, BlockFilterQuery, and the codecs shared by writer and reader: footer, index,
// record syntax, gram filter builder.
#include "segments/segment_file.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>

#include "segments/crc32c.h"
#include "segments/segment_file_internal.h"

namespace oklog {

namespace sf = segment_format;
using namespace segment_internal;

std::string SegmentName::FileName() const { return low.ToString() + "-" + high.ToString() + ".seg"; }

std::optional<SegmentName> SegmentName::Parse(std::string_view name) {
  constexpr size_t n = Ulid::kTextSize;
  if (name.size() != 2 * n + 1 + 4 || name[n] != '-' || name.substr(2 * n + 1) != ".seg") return std::nullopt;
  if (!IsCanonicalUlid(name.data()) || !IsCanonicalUlid(name.data() + n + 1)) return std::nullopt;
  auto low = Ulid::Parse(name.substr(0, n));
  auto high = Ulid::Parse(name.substr(n + 1, n));
  if (!low || !high || *high < *low) return std::nullopt;
  return SegmentName{*low, *high};
}

void BlockFilterQuery::RequireLiteral(std::string_view lit) {
  // A window with LF before its last byte occurs in no record payload (a payload's only LF is
  // its last byte), so it cannot be looked up; skipping it keeps the filter miss-free.
  for (size_t i = 0; i + sf::kGramBytes <= lit.size(); ++i) {
    if (std::memchr(lit.data() + i, '\n', sf::kGramBytes - 1) != nullptr) continue;
    ForEachGramHash(lit.data() + i, sf::kGramBytes, [&](uint32_t h) { hashes_.push_back(h); });
  }
  std::sort(hashes_.begin(), hashes_.end());
  hashes_.erase(std::unique(hashes_.begin(), hashes_.end()), hashes_.end());
}

namespace segment_internal {

void PutVarint(std::string* dst, uint64_t v) {
  char buf[10];
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  dst->append(buf, n);
}

namespace {

// A bounded cursor over untrusted bytes: every read checks what is left, and the first
// failure sticks, so decoders can read a whole entry and test ok() once.
class Cursor {
 public:
  explicit Cursor(std::string_view s) : p_(s.data()), end_(s.data() + s.size()) {}
  bool ok() const { return ok_; }
  size_t left() const { return static_cast<size_t>(end_ - p_); }
  // Every varint of the format is below 2^32: at most 5 bytes.
  uint64_t Varint(uint64_t max) {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 35 && ok_; shift += 7) {
      if (p_ == end_) break;
      const uint8_t b = static_cast<uint8_t>(*p_++);
      v |= uint64_t{b & 0x7Fu} << shift;
      if ((b & 0x80) == 0) {
        if (v > max) break;
        return v;
      }
    }
    ok_ = false;
    return 0;
  }
  uint32_t Fixed32() {
    if (!ok_ || left() < 4) return Fail32();
    uint32_t v = GetFixed32(p_);
    p_ += 4;
    return v;
  }
  std::string_view Bytes(size_t n) {
    if (!ok_ || left() < n) {
      ok_ = false;
      return {};
    }
    std::string_view v(p_, n);
    p_ += n;
    return v;
  }

 private:
  uint32_t Fail32() {
    ok_ = false;
    return 0;
  }
  const char* p_;
  const char* end_;
  bool ok_ = true;
};

Ulid UlidFromBytes(std::string_view b) { return Ulid::FromBytes(reinterpret_cast<const uint8_t*>(b.data())); }

}  // namespace

void EncodeIndexFrameHeader(uint32_t index_size, std::string* dst) {
  PutFixed32(dst, sf::kIndexFrameMagic);
  PutFixed32(dst, static_cast<uint32_t>(index_size + sf::kFooterSize));
}

void EncodeFooter(const Footer& f, std::string* dst) {
  const size_t start = dst->size();
  PutFixed64(dst, f.index_offset);
  PutFixed32(dst, f.index_size);
  PutFixed32(dst, f.index_crc32c);
  PutFixed32(dst, f.version);
  PutFixed32(dst, crc32c::Value(dst->data() + start, sf::kFooterCrcCoveredBytes));
  PutFixed64(dst, sf::kFooterMagic);
}

Status DecodeFooter(const char* p, uint64_t file_size, Footer* f) {
  if (GetFixed64(p + 24) != sf::kFooterMagic) return Status::Corruption("bad footer magic");
  if (GetFixed32(p + 20) != crc32c::Value(p, sf::kFooterCrcCoveredBytes))
    return Status::Corruption("footer checksum mismatch");
  f->index_offset = GetFixed64(p);
  f->index_size = GetFixed32(p + 8);
  f->index_crc32c = GetFixed32(p + 12);
  f->version = GetFixed32(p + 16);
  if (f->version != sf::kFormatVersion)
    return Status::Corruption("unsupported segment format version " + std::to_string(f->version));
  if (f->index_size > sf::kMaxIndexBytes) return Status::Corruption("index too large");
  // The offset is bounded first: a crafted one near 2^64 would make the sum wrap around.
  if (f->index_offset < sf::kSkippableHeaderSize || f->index_offset > file_size ||
      f->index_offset + f->index_size + sf::kFooterSize != file_size)
    return Status::Corruption("index position does not match file size");
  return Status::Ok();
}

void EncodeIndex(const std::vector<std::string>& topics, const std::vector<PendingBlock>& blocks,
                 std::string* dst) {
  PutVarint(dst, blocks.size());
  PutVarint(dst, topics.size());
  for (const auto& t : topics) {
    PutVarint(dst, t.size());
    dst->append(t);
  }
  for (const auto& b : blocks) {
    PutVarint(dst, b.compressed_size);
    PutVarint(dst, b.raw_size);
    PutVarint(dst, b.records);
    PutFixed32(dst, b.crc32c);
    dst->append(reinterpret_cast<const char*>(b.first.bytes().data()), 16);
    dst->append(reinterpret_cast<const char*>(b.last.bytes().data()), 16);
    PutVarint(dst, b.flags);
    PutVarint(dst, b.topic_ids.size());
    for (uint32_t id : b.topic_ids) PutVarint(dst, id);
    PutVarint(dst, b.filter.size());
    dst->append(b.filter);
  }
}

Status DecodeIndex(std::string_view index, uint64_t blocks_end, std::vector<BlockInfo>* out) {
  Cursor c(index);
  const uint64_t nblocks = c.Varint(sf::kMaxBlocks);
  const uint64_t ntopics = c.Varint(sf::kMaxSegmentTopics);
  if (!c.ok() || nblocks == 0) return Status::Corruption("bad index header");
  // Bound allocations by what the bytes can hold, not by what they claim.
  if (nblocks > c.left() / sf::kMinBlockEntryBytes || ntopics > c.left() / 2)
    return Status::Corruption("index counts exceed its size");
  std::vector<std::string_view> topics(ntopics);
  for (auto& t : topics) {
    t = c.Bytes(c.Varint(sf::kMaxTopicBytes));
    if (!c.ok() || t.empty()) return Status::Corruption("bad topic table");
  }
  for (size_t i = 1; i < topics.size(); ++i)
    if (!(topics[i - 1] < topics[i])) return Status::Corruption("topic table not sorted");

  std::vector<BlockInfo> blocks(nblocks);
  uint64_t offset = 0;
  for (size_t i = 0; i < nblocks; ++i) {
    BlockInfo& b = blocks[i];
    const std::string where = " in block entry " + std::to_string(i);
    b.offset = offset;
    b.compressed_size = static_cast<uint32_t>(c.Varint(sf::kMaxBlockFrameBytes));
    b.raw_size = static_cast<uint32_t>(c.Varint(sf::kMaxBlockRawBytes));
    b.records = static_cast<uint32_t>(c.Varint(sf::kMaxBlockRawBytes / sf::kMinRecordBytes));
    b.crc32c = c.Fixed32();
    const std::string_view first = c.Bytes(16);
    const std::string_view last = c.Bytes(16);
    const uint64_t flags = c.Varint(sf::kBlockTopicsIncomplete);
    const uint64_t nt = c.Varint(sf::kMaxTopicsPerBlock);
    if (!c.ok()) return Status::Corruption("truncated or out-of-range field" + where);
    b.first = UlidFromBytes(first);
    b.last = UlidFromBytes(last);
    b.topics_complete = (flags & sf::kBlockTopicsIncomplete) == 0;
    if (nt > c.left()) return Status::Corruption("topic count exceeds index" + where);
    b.topics.reserve(nt);
    uint64_t prev_id = 0;
    for (uint64_t k = 0; k < nt; ++k) {
      const uint64_t id = c.Varint(ntopics == 0 ? 0 : ntopics - 1);
      if (!c.ok() || ntopics == 0 || (k > 0 && id <= prev_id))
        return Status::Corruption("bad topic id" + where);
      prev_id = id;
      b.topics.emplace_back(topics[id]);
    }
    const uint64_t filter_size = c.Varint(sf::kMaxFilterBytes);
    if (!c.ok() || filter_size % sf::kFilterGranuleBytes != 0)
      return Status::Corruption("bad filter size" + where);
    b.filter.assign(c.Bytes(filter_size));
    if (!c.ok()) return Status::Corruption("truncated filter" + where);

    if (b.compressed_size < sf::kMinBlockFrameBytes || b.raw_size == 0 || b.records == 0 ||
        uint64_t{b.records} * sf::kMinRecordBytes > b.raw_size)
      return Status::Corruption("impossible block sizes" + where);
    if (b.last < b.first || (i > 0 && !(blocks[i - 1].last < b.first)))
      return Status::Corruption("block ULID ranges out of order" + where);
    if (b.records == 1 && b.first != b.last) return Status::Corruption("one record, two ULIDs" + where);
    offset += b.compressed_size;
    if (offset > blocks_end) return Status::Corruption("block extends past the index" + where);
  }
  if (c.left() != 0) return Status::Corruption("trailing bytes after the index");
  if (offset != blocks_end) return Status::Corruption("blocks do not fill the space before the index");
  *out = std::move(blocks);
  return Status::Ok();
}

bool IsCanonicalUlid(const char* p) {
  static constexpr auto kTable = [] {
    std::array<bool, 256> t{};
    for (char c : std::string_view("0123456789ABCDEFGHJKMNPQRSTVWXYZ")) t[static_cast<uint8_t>(c)] = true;
    return t;
  }();
  if (static_cast<uint8_t>(p[0]) > '7') return false;
  bool ok = true;
  for (size_t i = 0; i < sf::kUlidTextSize; ++i) ok &= kTable[static_cast<uint8_t>(p[i])];
  return ok;
}

bool ParseRecord(std::string_view rec, std::string_view* topic) {
  if (rec.size() < sf::kMinRecordBytes || rec.size() > sf::kMaxRecordBytes || rec.back() != '\n' ||
      rec[sf::kUlidTextSize] != ' ' || !IsCanonicalUlid(rec.data()))
    return false;
  const char* payload = rec.data() + sf::kUlidTextSize + 1;
  const size_t payload_len = rec.size() - sf::kUlidTextSize - 1;
  if (std::memchr(payload, '\n', payload_len - 1) != nullptr) return false;
  const void* sp = std::memchr(payload, ' ', payload_len - 1);
  if (sp == nullptr || sp == payload) return false;
  *topic = std::string_view(payload, static_cast<const char*>(sp) - payload);
  return true;
}

void GramFilterBuilder::Reset(size_t payload_bytes) {
  // Twice as many work bits as payload bytes (so more than its possible distinct grams): the
  // estimate stays accurate and few work bits straddle two filter bits.
  constexpr unsigned kMinLog2 = 13;
  constexpr unsigned kMaxLog2 = std::countr_zero(sf::kMaxFilterBytes * 8);
  const unsigned log2 = static_cast<unsigned>(std::bit_width(payload_bytes)) + 1;
  log2_bits_ = std::clamp(log2, kMinLog2, kMaxLog2);
  bits_.assign(size_t{1} << (log2_bits_ - 6), 0);
  set_ = 0;
}

void GramFilterBuilder::AddPayload(const char* p, size_t n) {
  if (n < sf::kGramBytes) return;
  const unsigned shift = 32 - log2_bits_;
  uint64_t* bits = bits_.data();
  size_t set = set_;
  auto add = [&](uint32_t g) {
    const uint32_t b = sf::GramHash(g) >> shift;
    uint64_t& w = bits[b >> 6];
    const uint64_t m = uint64_t{1} << (b & 63);
    set += (w & m) == 0;
    w |= m;
  };
  // One lower-cased 8-byte load gives the grams at 5 positions.
  size_t i = 0;
  for (; i + 8 <= n; i += 5) {
    uint64_t x;
    std::memcpy(&x, p + i, 8);
    x = sf::LowerAscii8(x);
    for (unsigned k = 0; k < 5; ++k) add(static_cast<uint32_t>(x >> (8 * k)));
  }
  for (; i + sf::kGramBytes <= n; ++i) {
    uint32_t x;
    std::memcpy(&x, p + i, 4);
    add(static_cast<uint32_t>(sf::LowerAscii8(x)));
  }
  set_ = set;
}

double GramFilterBuilder::Finish(size_t compressed_bytes, std::string* out) {
  out->clear();
  const size_t m = size_t{1} << log2_bits_;
  const size_t set = set_;
  if (set == 0) return 0;
  if (set == m) return INFINITY;
  // Linear counting: the distinct-gram estimate from the fill of the work bitmap.
  const double grams = -static_cast<double>(m) * std::log1p(-static_cast<double>(set) / static_cast<double>(m));
  const double want_bytes = std::ceil(grams * sf::kFilterBitsPerGram / 64) * 8;
  const size_t cap_bytes = compressed_bytes * sf::kMaxFilterPerMille / 1000 / 8 * 8;
  // Never more filter bits than work bits: the mapping below needs each work bit to cover at
  // most one filter bit boundary.
  const size_t bytes = std::min({static_cast<size_t>(want_bytes), cap_bytes, m / 8});
  if (bytes < sf::kMinFilterBytes) return grams;  // too small a budget to prune anything
  // Work bit j stands for the hashes [j << shift, (j + 1) << shift), which land on filter bits
  // FilterBit(lo) .. FilterBit(hi): at most two adjacent ones. Setting both keeps every
  // gram's bit set.
  filter_.assign(bytes / 8, 0);
  const unsigned shift = 32 - log2_bits_;
  const uint64_t filter_bits = bytes * 8;
  size_t fill = 0;
  auto set_bit = [&](uint64_t a) {
    uint64_t& w = filter_[a >> 6];
    const uint64_t mask = uint64_t{1} << (a & 63);
    fill += (w & mask) == 0;
    w |= mask;
  };
  for (size_t w = 0; w < bits_.size(); ++w) {
    for (uint64_t x = bits_[w]; x != 0; x &= x - 1) {
      const uint64_t j = w * 64 + static_cast<unsigned>(std::countr_zero(x));
      set_bit(((j << shift) * filter_bits) >> 32);
      set_bit(((((j + 1) << shift) - 1) * filter_bits) >> 32);
    }
  }
  if (static_cast<double>(fill) > sf::kMaxFilterFill * static_cast<double>(filter_bits)) return grams;
  out->assign(reinterpret_cast<const char*>(filter_.data()), bytes);
  return grams;
}

}  // namespace segment_internal
}  // namespace oklog
