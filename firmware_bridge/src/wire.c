/* Bytes on the wire: CRC-32C, COBS, float16, serial framing and CAN segmentation (PROTOCOL.md). */
#include <string.h>

#include "wwfw.h"

/* CRC-32C (Castagnoli, reflected 0x82F63B78, init and final xor 0xFFFFFFFF), four bits at a time:
 * a 64-byte table fits any microcontroller's flash and still runs ~2 cycles/bit. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x105EC76Fu, 0x20BD8EDEu, 0x30E349B1u, 0x417B1DBCu, 0x5125DAD3u, 0x61C69362u, 0x7198540Du,
    0x82F63B78u, 0x92A8FC17u, 0xA24BB5A6u, 0xB21572C9u, 0xC38D26C4u, 0xD3D3E1ABu, 0xE330A81Au, 0xF36E6F75u};

uint32_t wwfw_crc32c(const uint8_t *p, size_t n) { return wwfw_crc32c_update(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu; }

uint32_t wwfw_crc32c_update(uint32_t c, const uint8_t *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    c ^= p[i];
    c = (c >> 4) ^ crc_nibble[c & 0xFu];
    c = (c >> 4) ^ crc_nibble[c & 0xFu];
  }
  return c;
}

size_t wwfw_cobs_encode(const uint8_t *in, size_t n, uint8_t *out) {
  size_t r = 0, w = 1, code_at = 0;
  uint8_t code = 1;
  for (r = 0; r < n; r++) {
    if (in[r] == 0) {
      out[code_at] = code;
      code_at = w++;
      code = 1;
    } else {
      out[w++] = in[r];
      if (++code == 0xFF) {
        out[code_at] = code;
        code_at = w++;
        code = 1;
      }
    }
  }
  out[code_at] = code;
  return w;
}

size_t wwfw_cobs_decode(const uint8_t *in, size_t n, uint8_t *out) {
  size_t r = 0, w = 0;
  while (r < n) {
    uint8_t code = in[r++], i;
    if (code == 0 || r + code - 1 > n) return 0;
    for (i = 1; i < code; i++) {
      if (in[r] == 0) return 0;
      out[w++] = in[r++];
    }
    if (code != 0xFF && r < n) out[w++] = 0;
  }
  return w;
}

float wwfw_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, bits;
  float f;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      exp = 127 - 15 + 1;
      while ((man & 0x400u) == 0) {
        man <<= 1;
        exp--;
      }
      bits = sign | (exp << 23) | ((man & 0x3FFu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  memcpy(&f, &bits, 4);
  return f;
}

/* a frame is 0x00, the COBS bytes, 0x00: the leading delimiter cuts off any garbage the line picked up
 * since the last frame (it would otherwise glue onto this one), an empty frame costs the receiver nothing */
size_t wwfw_serial_frame(const uint8_t *msg, size_t n, uint8_t *out) {
  size_t k = wwfw_cobs_encode(msg, n, out + 1);
  out[0] = 0;
  out[k + 1] = 0;
  return k + 2;
}

void wwfw_serial_feed(wwfw *fw, wwfw_serial_rx *rx, const uint8_t *bytes, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    uint8_t b = bytes[i];
    if (b != 0) {
      if (rx->n < sizeof rx->buf) rx->buf[rx->n++] = b;
      else rx->overflow = 1;
      continue;
    }
    if (rx->n > 0) {
      /* COBS decodes in place: the output never overtakes the input */
      size_t m = rx->overflow ? 0 : wwfw_cobs_decode(rx->buf, rx->n, rx->buf);
      if (m == 0 || m > WWFW_MAX_MSG) fw->frame_errors++;
      else wwfw_handle_message(fw, rx->buf, m);
    }
    rx->n = 0;
    rx->overflow = 0;
  }
}

/* ---- CAN: a 64-identifier block per direction; bit 5 marks a message's first frame, bits 0-4 count
 * frames modulo 32. The first frame starts with the message length (u16), so every data byte after it
 * carries message bytes: 7/8 of nothing is lost to per-frame headers. */
#define CAN_START 0x20u

void wwfw_can_rx_reset(wwfw_can_rx *rx) { memset(rx, 0, sizeof *rx); }

size_t wwfw_can_frame_count(size_t msg_len, size_t frame_bytes) { return (msg_len + 2 + frame_bytes - 1) / frame_bytes; }

size_t wwfw_can_segment(const uint8_t *msg, size_t msg_len, size_t frame_bytes, size_t i, uint32_t *id_offset,
                        uint8_t *data) {
  size_t total = msg_len + 2, at = i * frame_bytes, k, n = 0;
  if (at >= total) return 0;
  *id_offset = (i == 0 ? CAN_START : 0u) | (uint32_t)(i & 0x1Fu);
  for (k = at; k < total && n < frame_bytes; k++, n++) {
    data[n] = k == 0 ? (uint8_t)msg_len : k == 1 ? (uint8_t)(msg_len >> 8) : msg[k - 2];
  }
  return n;
}

int wwfw_can_rx_frame(wwfw_can_rx *rx, uint32_t id_offset, const uint8_t *data, size_t len, size_t *msg_len) {
  size_t k = 0;
  uint8_t seg = (uint8_t)(id_offset & 0x1Fu);
  if (id_offset & CAN_START) {
    if (len < 2) return -1;
    rx->want = wwfw_rd16(data);
    rx->n = 0;
    rx->next_seg = 1;
    rx->active = rx->want >= WWFW_HEADER + WWFW_CRC && rx->want <= WWFW_MAX_MSG;
    if (!rx->active) return -1;
    k = 2;
  } else {
    if (!rx->active) return 0;
    if (seg == ((rx->next_seg - 1u) & 0x1Fu)) return 0; /* a repeated frame: already have it */
    if (seg != (rx->next_seg & 0x1Fu)) {              /* a lost frame: the message cannot complete */
      rx->active = 0;
      return -1;
    }
    rx->next_seg++;
  }
  for (; k < len && rx->n < rx->want; k++) rx->buf[rx->n++] = data[k];
  if (rx->n == rx->want) {
    rx->active = 0;
    *msg_len = rx->n;
    return 1;
  }
  return 0;
}

void wwfw_can_feed(wwfw *fw, wwfw_can_rx *rx, uint32_t id_offset, const uint8_t *data, size_t len) {
  size_t n = 0;
  int r = wwfw_can_rx_frame(rx, id_offset, data, len, &n);
  if (r < 0) fw->frame_errors++;
  else if (r == 1) wwfw_handle_message(fw, rx->buf, n);
}
