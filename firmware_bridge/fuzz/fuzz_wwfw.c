/* libFuzzer harness for the firmware: every entry point (messages, serial bytes, CAN frames, ticks) driven
 * by the fuzzer's bytes, with oracles checked after every step (issue 12):
 *   - a message with a wrong CRC changes no state but the CRC error counter and flag;
 *   - every command is finite, inside its column's limits, and moves at most vmax per tick in each space
 *     (joint columns, pose columns, the gripper) across every transition: chunk boundaries, replace,
 *     at-time preemption, hold, e-stop, reset and joint/end-effector switches;
 *   - queue bounds: points, chunk slots, outbox, the partial chunk, fates;
 *   - every reply is a well-formed message with a correct CRC.
 * The input is a small program: byte 0 picks the arm, then each op byte picks an action whose arguments
 * follow. Well-formed messages are built with a correct CRC (random bytes almost never have one), so the
 * fuzzer reaches the dispatcher, the queue and the interpolator, not only the CRC check.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -ffp-contract=off -Iinclude src/{wire,fw,interp}.c fuzz/fuzz_wwfw.c
 *   ./a.out -runs=100000 corpus/          (tests/bridge/test_bridge_fuzz.py runs it; WALLWM_FUZZ_RUNS=N for more)
 * Built with -DWWFW_FUZZ_STANDALONE it is a plain program that replays the files named on its command line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wwfw.h"

static wwfw fw, snap;
static wwfw_serial_rx srx;
static wwfw_can_rx crx;
static const uint8_t *in;
static size_t in_n, in_k;
static uint32_t owner = 0x5E55u, now = 0;
static uint16_t ctrl_seq = 0;
static uint8_t open_fmt = 0;
static uint16_t open_id = 0, open_sent = 0, open_len = 0;

static void fail(const char *what, double a, double b) {
  fprintf(stderr, "ORACLE: %s (%g, %g) at t=%lu space=%u mode=%u\n", what, a, b, (unsigned long)now, fw.space, fw.mode);
  __builtin_trap();
}

static uint8_t u8(void) { return in_k < in_n ? in[in_k++] : 0; }
static uint16_t u16(void) { return (uint16_t)(u8() | (u8() << 8)); }

/* ---- oracles -------------------------------------------------------------------------------------- */
static void check_bounds(void) {
  uint8_t c;
  const wwfw_limit *lim = wwfw_limits(&fw, fw.space == WWFW_SPACE_EE ? WWFW_FMT_EE : 0u);
  if (fw.q_write - fw.q_read > WWFW_QUEUE_POINTS) fail("queue holds more points than it has", fw.q_write - fw.q_read, 0);
  if (fw.c_write - fw.c_read > WWFW_MAX_CHUNKS) fail("chunk table overflow", fw.c_write - fw.c_read, 0);
  if (fw.open_valid && (fw.open.received > fw.open.len ||
                        fw.q_write - fw.q_read + fw.open.received > WWFW_QUEUE_POINTS))
    fail("partial chunk beyond the queue", fw.open.received, fw.open.len);
  if (wwfw_free_chunks(&fw) > WWFW_MAX_CHUNKS) fail("free chunk slots", wwfw_free_chunks(&fw), 0);
  if (fw.out_write - fw.out_read > WWFW_OUTBOX) fail("outbox overflow", fw.out_write - fw.out_read, 0);
  if (fw.ncols != wwfw_cols(&fw, fw.space)) fail("columns do not match the space", fw.ncols, fw.space);
  for (c = 0; c < fw.ncols; c++) {
    if (!isfinite(fw.cmd[c])) fail("command not finite", c, fw.cmd[c]);
    if (fw.cmd[c] < lim[c].lo || fw.cmd[c] > lim[c].hi) fail("command outside its limits", c, fw.cmd[c]);
  }
}

static void drain(void) {
  uint8_t m[WWFW_OUT_MAX];
  size_t n;
  while (wwfw_outbox_pop(&fw, m, &n)) {
    if (n < WWFW_HEADER + WWFW_CRC || n > WWFW_OUT_MAX) fail("reply length", (double)n, 0);
    if (wwfw_crc32c(m, n - WWFW_CRC) != wwfw_rd32(m + n - WWFW_CRC)) fail("reply CRC", (double)n, 0);
    if (m[0] < WWFW_ARM_INFO || m[0] > WWFW_FATE) fail("reply type", m[0], 0);
  }
}

/* per-space commands: joint columns, pose columns, gripper */
static void cmds(float *j, float *e, float *g) {
  memcpy(j, fw.space == WWFW_SPACE_JOINT ? fw.cmd : fw.cmd_other, sizeof fw.cmd);
  memcpy(e, fw.space == WWFW_SPACE_EE ? fw.cmd : fw.cmd_other, sizeof fw.cmd);
  *g = fw.arm.has_gripper ? fw.cmd[fw.ncols - 1] : 0.0f;
}
static void check_step(float a, float b, float vmax) {
  float d = fabsf(b - a), allowed = vmax / (float)fw.arm.control_rate_hz;
  if (!(d <= allowed * (1.0f + 1e-5f) + 1e-6f)) fail("command moved faster than vmax in one tick", d, allowed);
}
/* one control tick, `late_ms` after it was due (a stalled port): the command still moves one tick's worth */
static void tick(uint32_t late_ms) {
  float j0[WWFW_MAX_COLS], e0[WWFW_MAX_COLS], g0, j1[WWFW_MAX_COLS], e1[WWFW_MAX_COLS], g1;
  uint8_t c, nj = fw.arm.n_joints;
  cmds(j0, e0, &g0);
  now += 1000u / fw.arm.control_rate_hz + late_ms;
  wwfw_tick(&fw, now);
  cmds(j1, e1, &g1);
  for (c = 0; c < nj; c++) check_step(j0[c], j1[c], fw.arm.joint[c].vmax);
  for (c = 0; c < 6; c++) check_step(e0[c], e1[c], fw.arm.ee[c].vmax);
  if (fw.arm.has_gripper) check_step(g0, g1, fw.arm.joint[nj].vmax);
  check_bounds();
  drain();
}

/* ---- messages --------------------------------------------------------------------------------------- */
static size_t seal(uint8_t type, uint16_t seq, uint32_t session, const uint8_t *body, size_t n, uint8_t *m) {
  m[0] = type;
  wwfw_wr16(m + 1, seq);
  wwfw_wr32(m + 3, session);
  if (n) memcpy(m + WWFW_HEADER, body, n);
  wwfw_wr32(m + WWFW_HEADER + n, wwfw_crc32c(m, WWFW_HEADER + n));
  return WWFW_HEADER + n + WWFW_CRC;
}

static void deliver(const uint8_t *m, size_t n) {
  if (u8() & 1) { /* half the time through the serial decoder, sometimes after line noise */
    uint8_t frame[WWFW_MAX_MSG + WWFW_MAX_MSG / 254 + 4];
    size_t k = wwfw_serial_frame(m, n, frame);
    wwfw_serial_feed(&fw, &srx, frame, k);
  } else {
    wwfw_handle_message(&fw, m, n);
  }
  check_bounds();
  drain();
}

/* the session and seq of a fuzzed reliable message: mostly the owner's, mostly the expected one */
static uint32_t pick_session(void) {
  uint8_t s = u8();
  return s < 200 ? owner : s < 240 ? owner + 1u : (uint32_t)s;
}
static uint16_t pick_seq(void) {
  uint8_t s = u8();
  return s < 200 ? fw.rx_expected : s < 230 ? (uint16_t)(fw.rx_expected - 1u) : (uint16_t)(fw.rx_expected + s);
}

static float value(uint8_t fmt, uint8_t col, uint8_t k) {
  const wwfw_limit *l = &wwfw_limits(&fw, fmt)[col];
  /* mostly inside the limits; k >= 250 gives out-of-range and non-finite values */
  if (k < 250) return l->lo + (l->hi - l->lo) * (float)k / 249.0f;
  return k == 250 ? NAN : k == 251 ? INFINITY : k == 252 ? l->hi + 0.01f : k == 253 ? -1e30f : l->lo - 1e-3f;
}

static size_t rows(uint8_t fmt, uint16_t count, uint8_t *out) {
  uint8_t cols = wwfw_cols(&fw, (fmt & WWFW_FMT_EE) ? WWFW_SPACE_EE : WWFW_SPACE_JOINT), enc = fmt & 3u, c;
  size_t k = 0;
  uint16_t r;
  for (r = 0; r < count; r++) {
    for (c = 0; c < cols; c++) {
      float v = value(fmt, c, u8());
      if (enc == WWFW_ENC_F32) {
        uint32_t u;
        memcpy(&u, &v, 4);
        wwfw_wr32(out + k, u), k += 4;
      } else if (enc == WWFW_ENC_INT16) {
        wwfw_wr16(out + k, u16()), k += 2; /* any raw value: -32768 is the invalid one */
      } else {
        wwfw_wr16(out + k, u16()), k += 2; /* any half: NaN, inf, out of range included */
      }
    }
  }
  return k;
}

static void op_chunk_begin(void) {
  static const float rates[] = {50.0f, 500.0f, 1.0f, 2.0f, 0.999f, 1e-30f, 0.0f, 100.0f, 250.0f, 1000.0f, 7.5f, NAN};
  uint8_t body[WWFW_MAX_MSG], m[WWFW_MAX_MSG + 16], fmt = u8(), mode = u8() % 4;
  uint16_t len = (uint16_t)(1u + u8() % 40u), now_rows, id = (uint16_t)(u8() % 8u);
  uint8_t cols, rb;
  size_t k = 18, room;
  float rate = rates[u8() % (sizeof rates / sizeof rates[0])];
  uint32_t u;
  if (u8() < 240) fmt &= 0x0Fu, fmt = (uint8_t)((fmt & 0x0Cu) | (fmt & 3u) % 3u); /* mostly a valid format */
  if (u8() == 0) len = u16();
  cols = wwfw_cols(&fw, (fmt & WWFW_FMT_EE) ? WWFW_SPACE_EE : WWFW_SPACE_JOINT);
  rb = (uint8_t)(cols * ((fmt & 3u) == WWFW_ENC_F32 ? 4u : 2u));
  room = (WWFW_MAX_MSG - WWFW_HEADER - WWFW_CRC - 18u) / rb;
  now_rows = (uint16_t)(u8() % (len < room ? len + 1u : room + 1u));
  wwfw_wr16(body, id);
  wwfw_wr32(body + 2, 0);
  wwfw_wr16(body + 6, len);
  memcpy(&u, &rate, 4);
  wwfw_wr32(body + 8, u);
  body[12] = mode;
  body[13] = fmt;
  wwfw_wr32(body + 14, now + u8());
  k += rows(fmt, now_rows, body + 18);
  if (u8() == 0 && k > 18) k--; /* a torn row */
  open_id = id, open_fmt = fmt, open_sent = now_rows, open_len = len;
  deliver(m, seal(WWFW_CHUNK_BEGIN, pick_seq(), pick_session(), body, k, m));
}

static void op_chunk_data(void) {
  uint8_t body[WWFW_MAX_MSG], m[WWFW_MAX_MSG + 16];
  uint8_t cols = wwfw_cols(&fw, (open_fmt & WWFW_FMT_EE) ? WWFW_SPACE_EE : WWFW_SPACE_JOINT);
  uint8_t rb = (uint8_t)(cols * ((open_fmt & 3u) == WWFW_ENC_F32 ? 4u : 2u));
  size_t room = (WWFW_MAX_MSG - WWFW_HEADER - WWFW_CRC - 4u) / rb, k;
  uint16_t left = open_len > open_sent ? (uint16_t)(open_len - open_sent) : 1u;
  uint16_t count = (uint16_t)(1u + u8() % (left < room ? left : room));
  wwfw_wr16(body, u8() < 240 ? open_id : u8());
  wwfw_wr16(body + 2, u8() < 240 ? open_sent : u8());
  k = 4 + rows(open_fmt, count, body + 4);
  open_sent = (uint16_t)(open_sent + count);
  deliver(m, seal(WWFW_CHUNK_DATA, pick_seq(), pick_session(), body, k, m));
}

static void op_control(void) {
  static const uint8_t types[] = {WWFW_HEARTBEAT, WWFW_HOLD, WWFW_ESTOP, WWFW_HEARTBEAT};
  uint8_t body[2], m[32], t = types[u8() % 4u];
  uint16_t ack = u8() < 200 ? fw.fate_next : u16();
  size_t n = 0;
  if (t == WWFW_HEARTBEAT && u8() < 220) wwfw_wr16(body, (uint16_t)(ack - u8() % 40u)), n = 2;
  ctrl_seq = (uint16_t)(ctrl_seq + (u8() < 240 ? 1u : 0u));
  deliver(m, seal(t, ctrl_seq, pick_session(), body, n, m));
}

static void op_hello(void) {
  uint8_t body[2] = {WWFW_PROTO_VERSION, 0}, m[32];
  uint8_t s = u8();
  uint32_t session = s < 128 ? owner : s < 250 ? (uint32_t)s << 8 : 0u;
  if (u8() == 0) body[0] = u8();
  if (session != owner && s >= 128 && u8() < 64) owner = session; /* a new host, once the old one is quiet */
  deliver(m, seal(WWFW_HELLO, u16(), session, body, 2, m));
}

static void op_reset(void) { /* RESET, or now and then BYE (the owner leaves; a HELLO takes the link again) */
  uint8_t m[32];
  deliver(m, seal(u8() < 224 ? WWFW_RESET : WWFW_BYE, pick_seq(), pick_session(), NULL, 0, m));
}

/* a message with a wrong CRC: nothing may change but the CRC error counter and flag */
static void op_bad_crc(void) {
  uint8_t body[64], m[128];
  size_t n = u8() % sizeof body, i, len;
  uint32_t crc_errors;
  for (i = 0; i < n; i++) body[i] = u8();
  len = seal((uint8_t)(1u + u8() % 7u), pick_seq(), pick_session(), body, n, m);
  m[u8() % len] ^= (uint8_t)(1u << (u8() % 8u)); /* one flipped bit anywhere: CRC-32C always catches it */
  memcpy(&snap, &fw, sizeof fw);
  crc_errors = fw.crc_errors;
  wwfw_handle_message(&fw, m, len);
  snap.crc_errors = crc_errors + 1u;
  snap.faults |= WWFW_F_CRC_ERROR;
  if (memcmp(&snap, &fw, sizeof fw) != 0) fail("a message with a wrong CRC changed the firmware's state", 0, 0);
}

static void op_serial_bytes(void) {
  uint8_t b[64];
  size_t n = u8() % sizeof b, i;
  for (i = 0; i < n; i++) b[i] = u8();
  wwfw_serial_feed(&fw, &srx, b, n);
  check_bounds();
  drain();
}

static void op_can(void) {
  uint8_t d[64];
  size_t n = u8() % 65u, i;
  uint32_t off = u8() % 64u;
  for (i = 0; i < n; i++) d[i] = u8();
  wwfw_can_feed(&fw, &crx, off, d, n);
  check_bounds();
  drain();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint16_t rates[] = {1000, 500, 250, 100};
  wwfw_arm arm;
  uint8_t cfg;
  in = data, in_n = size, in_k = 0;
  now = 0, owner = 0x5E55u, ctrl_seq = 0, open_fmt = 0, open_id = 0, open_sent = 0, open_len = 0;
  cfg = u8();
  wwfw_default_arm(&arm, (uint8_t)(1u + cfg % 7u));
  arm.has_gripper = (cfg >> 3) & 1u ? 0u : 1u;
  arm.control_rate_hz = rates[(cfg >> 4) & 3u];
  arm.feedback_rate_hz = (cfg & 0x40u) ? 0u : 50u;
  arm.watchdog_hold_ms = (uint16_t)(40u + u8());
  arm.watchdog_estop_ms = (uint16_t)(arm.watchdog_hold_ms + u8() * 4u);
  memset(&fw, 0, sizeof fw);
  memset(&srx, 0, sizeof srx);
  wwfw_can_rx_reset(&crx);
  wwfw_init(&fw, &arm, 1);
  check_bounds();
  while (in_k < in_n) {
    uint8_t op = u8() % 12u, n, i;
    switch (op) {
      case 0: op_hello(); break;
      case 1: case 2: op_chunk_begin(); break;
      case 3: op_chunk_data(); break;
      case 4: op_control(); break;
      case 5: op_reset(); break;
      case 6:
        n = (uint8_t)(1u + u8() % 16u);
        for (i = 0; i < n; i++) tick(0);
        break;
      case 7: /* long enough to finish a chunk */
        n = u8();
        for (i = 0; i < n; i++) tick(0);
        break;
      case 8: op_bad_crc(); break;
      case 9: op_serial_bytes(); break;
      case 10: op_can(); break;
      default: /* a stall or a long quiet stretch in one tick: the watchdog's hold and e-stop */
        tick((uint32_t)u8() * 8u);
        break;
    }
  }
  return 0;
}

#ifdef WWFW_FUZZ_STANDALONE
int main(int argc, char **argv) {
  int i;
  for (i = 1; i < argc; i++) {
    static uint8_t buf[1 << 20];
    size_t n;
    FILE *f = fopen(argv[i], "rb");
    if (!f) {
      perror(argv[i]);
      return 2;
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
  }
  printf("replayed %d inputs\n", argc - 1);
  return 0;
}
#endif
