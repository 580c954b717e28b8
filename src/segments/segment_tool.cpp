#include "segments/segment_tool.h"

#include <cstdio>

#include "segments/segment_file.h"

namespace oklog {

int SegmentCat(const std::string& path, std::ostream& out) {
  auto r = SegmentReader::Open(path);
  if (!r.ok()) {
    out.flush();
    std::fprintf(stderr, "%s: %s\n", path.c_str(), r.status().ToString().c_str());
    return 1;
  }
  std::string block;
  for (size_t i = 0; i < (*r)->blocks().size(); ++i) {
    Status s = (*r)->ReadBlock(i, &block);
    if (!s.ok()) {
      out.flush();
      std::fprintf(stderr, "%s: %s\n", path.c_str(), s.ToString().c_str());
      return 1;
    }
    out.write(block.data(), static_cast<std::streamsize>(block.size()));
  }
  out.flush();
  return out.good() ? 0 : 1;
}

int SegmentVerify(const std::string& path, std::ostream& out) {
  auto r = SegmentReader::Open(path);
  Status s = r.ok() ? (*r)->Verify() : r.status();
  if (!s.ok()) {
    out << path << ": FAILED: " << s.ToString() << "\n";
    return 1;
  }
  out << path << ": OK, " << (*r)->blocks().size() << " blocks, " << (*r)->records() << " records\n";
  return 0;
}

int SegmentStat(const std::string& path, std::ostream& out) {
  auto r = SegmentReader::Open(path);
  if (!r.ok()) {
    out << path << ": " << r.status().ToString() << "\n";
    return 1;
  }
  const SegmentReader& seg = **r;
  uint64_t compressed = 0, filter_bytes = 0, filtered_blocks = 0, max_raw = 0;
  size_t topics_max = 0;
  for (const auto& b : seg.blocks()) {
    compressed += b.compressed_size;
    filter_bytes += b.filter.size();
    filtered_blocks += b.filter.empty() ? 0 : 1;
    max_raw = std::max<uint64_t>(max_raw, b.raw_size);
    topics_max = std::max(topics_max, b.topics.size());
  }
  const uint64_t index_bytes = seg.file_bytes() - compressed;
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "%s\n"
                "  low           %s (%llu ms)\n"
                "  high          %s (%llu ms)\n"
                "  records       %llu\n"
                "  blocks        %zu (largest %llu raw bytes)\n"
                "  raw bytes     %llu (%.1f per record)\n"
                "  file bytes    %llu (%.1f per record), ratio %.3f\n"
                "  block bytes   %llu\n"
                "  index bytes   %llu (%.2f%% of file)\n"
                "  filter bytes  %llu in %llu blocks (%.2f%% of block bytes, %.0f per filtered block)\n"
                "  topics/block  up to %zu\n",
                path.c_str(), seg.low().ToString().c_str(), static_cast<unsigned long long>(seg.low().unix_ms()),
                seg.high().ToString().c_str(), static_cast<unsigned long long>(seg.high().unix_ms()),
                static_cast<unsigned long long>(seg.records()), seg.blocks().size(),
                static_cast<unsigned long long>(max_raw), static_cast<unsigned long long>(seg.raw_bytes()),
                static_cast<double>(seg.raw_bytes()) / static_cast<double>(seg.records()),
                static_cast<unsigned long long>(seg.file_bytes()),
                static_cast<double>(seg.file_bytes()) / static_cast<double>(seg.records()),
                static_cast<double>(seg.raw_bytes()) / static_cast<double>(seg.file_bytes()),
                static_cast<unsigned long long>(compressed), static_cast<unsigned long long>(index_bytes),
                100.0 * static_cast<double>(index_bytes) / static_cast<double>(seg.file_bytes()),
                static_cast<unsigned long long>(filter_bytes), static_cast<unsigned long long>(filtered_blocks),
                100.0 * static_cast<double>(filter_bytes) / static_cast<double>(compressed),
                filtered_blocks ? static_cast<double>(filter_bytes) / static_cast<double>(filtered_blocks) : 0.0,
                topics_max);
  out << buf;
  return 0;
}

}  // namespace oklog
