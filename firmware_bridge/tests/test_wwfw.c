/* C unit tests of the firmware library: CRC, COBS, float16, CAN segmentation, golden vectors, queue,
 * interpolator (linear, cubic, velocity limits), watchdog. Usage: wwfw_tests path/to/golden/vectors.txt
 * Prints one line per failure and "ok: N checks"; exits non-zero on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wwfw.h"

static int checks = 0, failures = 0;
#define CHECK(cond, ...)                                       \
  do {                                                         \
    checks++;                                                  \
    if (!(cond)) {                                             \
      failures++;                                              \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
      printf(__VA_ARGS__);                                     \
      printf("\n");                                            \
    }                                                          \
  } while (0)

static wwfw fw; /* large: static */

static uint32_t g_session = 1; /* the session mk() names (connect() sets it) */
static size_t mk(uint8_t type, uint16_t seq, const uint8_t *body, size_t n, uint8_t *out) {
  out[0] = type;
  wwfw_wr16(out + 1, seq);
  wwfw_wr32(out + 3, g_session);
  if (n) memcpy(out + WWFW_HEADER, body, n);
  wwfw_wr32(out + WWFW_HEADER + n, wwfw_crc32c(out, WWFW_HEADER + n));
  return n + WWFW_HEADER + WWFW_CRC;
}

static uint32_t last_session; /* the session the last popped reply is addressed to */
static uint8_t last_reply[WWFW_OUT_MAX]; /* body of the reply to the last send_chunk / send_raw */
static int pop_type(uint8_t *type, uint8_t *body) {
  uint8_t m[WWFW_OUT_MAX];
  size_t n;
  if (!wwfw_outbox_pop(&fw, m, &n)) return 0;
  *type = m[0];
  last_session = wwfw_rd32(m + 3);
  if (body) memcpy(body, m + WWFW_HEADER, n - WWFW_HEADER - WWFW_CRC);
  return 1;
}
static void drain(void) {
  uint8_t t;
  while (pop_type(&t, NULL)) {
  }
}

static void connect(uint32_t session, uint16_t seq) {
  uint8_t b[2] = {WWFW_PROTO_VERSION, 0}, m[32];
  g_session = session;
  wwfw_handle_message(&fw, m, mk(WWFW_HELLO, seq, b, 2, m));
  drain();
}

/* CHUNK_BEGIN with float32 rows, all in one message */
static uint8_t send_chunk(uint16_t seq, uint16_t id, uint16_t len, float rate, uint8_t mode, uint8_t fmt,
                          const float *rows, uint8_t cols) {
  static uint8_t body[WWFW_MAX_MSG], m[WWFW_MAX_MSG + 8];
  size_t k = 18, i;
  uint32_t u;
  uint8_t t, *reply = last_reply;
  wwfw_wr16(body, id);
  wwfw_wr32(body + 2, 0);
  wwfw_wr16(body + 6, len);
  memcpy(&u, &rate, 4);
  wwfw_wr32(body + 8, u);
  body[12] = mode;
  body[13] = (uint8_t)(fmt | WWFW_ENC_F32);
  wwfw_wr32(body + 14, 0);
  for (i = 0; i < (size_t)len * cols; i++, k += 4) {
    memcpy(&u, &rows[i], 4);
    wwfw_wr32(body + k, u);
  }
  wwfw_handle_message(&fw, m, mk(WWFW_CHUNK_BEGIN, seq, body, k, m));
  if (!pop_type(&t, reply)) return 0;
  drain();
  return t == WWFW_ACK ? 0 : reply[4]; /* 0 or the NACK reason */
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }
static size_t unhex(const char *s, uint8_t *out) {
  size_t n = 0;
  while (s[0] && s[1] && s[0] != ' ' && s[0] != '\n') {
    out[n++] = (uint8_t)(hexval(s[0]) << 4 | hexval(s[1]));
    s += 2;
  }
  return n;
}

static void test_basics(void) {
  uint8_t in[700], enc[720], dec[720];
  size_t n, m, k;
  CHECK(wwfw_crc32c((const uint8_t *)"123456789", 9) == 0xE3069283u, "CRC-32C check value");
  srand(1);
  for (n = 0; n < 700; n += 7) {
    for (k = 0; k < n; k++) in[k] = (uint8_t)(rand() % 4 == 0 ? 0 : rand());
    m = wwfw_cobs_encode(in, n, enc);
    for (k = 0; k < m; k++) CHECK(enc[k] != 0, "COBS output has no zero (n=%zu)", n);
    CHECK(wwfw_cobs_decode(enc, m, dec) == n && memcmp(in, dec, n) == 0, "COBS round trip n=%zu", n);
  }
  enc[0] = 5, enc[1] = 1;
  CHECK(wwfw_cobs_decode(enc, 2, dec) == 0, "truncated COBS frame is refused");
  CHECK(wwfw_half_to_float(0x3C00) == 1.0f && wwfw_half_to_float(0xC000) == -2.0f, "half 1, -2");
  CHECK(wwfw_half_to_float(0x7BFF) == 65504.0f, "half max");
  CHECK(fabsf(wwfw_half_to_float(0x0001) - 5.9604645e-8f) < 1e-12f, "half subnormal");
  CHECK(isinf(wwfw_half_to_float(0x7C00)) && isnan(wwfw_half_to_float(0x7E00)), "half inf/nan");
}

static void test_can(void) {
  uint8_t msg[300], data[64];
  wwfw_can_rx rx;
  size_t i, n = 0, count;
  uint32_t off;
  int r = 0;
  for (i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)(i * 7);
  count = wwfw_can_frame_count(sizeof msg, 8);
  CHECK(count == 38, "frames for 300 bytes: %zu", count);
  wwfw_can_rx_reset(&rx);
  for (i = 0; i < count; i++) { /* every frame twice: repeats are ignored */
    size_t len = wwfw_can_segment(msg, sizeof msg, 8, i, &off, data);
    r = wwfw_can_rx_frame(&rx, off, data, len, &n);
    if (i + 1 < count) CHECK(wwfw_can_rx_frame(&rx, off, data, len, &n) == 0, "repeat ignored");
  }
  CHECK(r == 1 && n == sizeof msg && memcmp(rx.buf, msg, n) == 0, "CAN reassembly");
  wwfw_can_rx_reset(&rx);
  for (i = 0, r = 0; i < count; i++) {
    size_t len = wwfw_can_segment(msg, sizeof msg, 8, i, &off, data);
    if (i == 33) continue; /* a lost frame */
    if (wwfw_can_rx_frame(&rx, off, data, len, &n) == 1) r = 1;
  }
  CHECK(r == 0, "a message with a lost frame never completes");
}

static void test_golden(const char *path) {
  FILE *f = fopen(path, "r");
  char line[8192];
  uint8_t wire[4096], prev_msg[WWFW_MAX_MSG], out[WWFW_MAX_MSG + 16], m[WWFW_MAX_MSG];
  size_t prev_n = 0, lines = 0;
  wwfw_arm arm;
  wwfw_serial_rx rx;
  CHECK(f != NULL, "open %s", path);
  if (!f) return;
  memset(&rx, 0, sizeof rx);
  wwfw_default_arm(&arm, 6);
  fw.log = NULL;
  wwfw_init(&fw, &arm, 1);
  while (fgets(line, sizeof line, f)) {
    char *bar = strstr(line, " | ");
    size_t n;
    if (line[0] == '#' || !bar) continue;
    lines++;
    if (line[0] == '>' || line[0] == '!') {
      uint32_t crc_before = fw.crc_errors;
      CHECK(fw.out_read == fw.out_write, "unconsumed reply before: %.60s", line);
      n = unhex(bar + 3, wire);
      CHECK(n >= 3 && wire[0] == 0 && wire[n - 1] == 0, "frame between two delimiters: %.60s", line);
      prev_n = wwfw_cobs_decode(wire + 1, n - 2, prev_msg);
      wwfw_serial_feed(&fw, &rx, wire, n);
      if (line[0] == '!') {
        CHECK(fw.crc_errors == crc_before + 1 && fw.out_read == fw.out_write, "corrupt frame: %.60s", line);
      }
    } else if (line[0] == '<') {
      size_t k;
      n = unhex(bar + 3, wire);
      CHECK(wwfw_outbox_pop(&fw, m, &k), "a reply is due: %.60s", line);
      k = wwfw_serial_frame(m, k, out);
      CHECK(k == n && memcmp(out, wire, n) == 0, "reply differs: %.60s", line);
    } else if (line[0] == '=') {
      size_t fb = (size_t)atoi(line + 2), i, count = wwfw_can_frame_count(prev_n, fb);
      char *p = bar + 3;
      for (i = 0; i < count; i++) {
        uint8_t data[64], want[64];
        uint32_t off;
        size_t len = wwfw_can_segment(prev_msg, prev_n, fb, i, &off, data), wl;
        CHECK((uint32_t)strtoul(p, &p, 16) == off, "CAN frame %zu identifier offset", i);
        wl = unhex(p + 1, want);
        CHECK(wl == len && memcmp(want, data, len) == 0, "CAN frame %zu data (%zu bytes)", i, fb);
        p = strchr(p + 1, ' ');
        if (!p) break;
        p++;
      }
    }
  }
  fclose(f);
  CHECK(lines > 20, "golden vectors read: %zu", lines);
  CHECK(fw.out_read == fw.out_write, "no reply left over");
}

/* ticks at 1 ms with a heartbeat every 50 ms, as a live host sends them (keeps the watchdog quiet) */
static void run_ticks(uint32_t *t, int n) {
  static uint16_t hb = 0;
  uint8_t m[16];
  int i;
  for (i = 0; i < n; i++) {
    wwfw_tick(&fw, ++(*t));
    if (*t % 50 == 0) {
      wwfw_handle_message(&fw, m, mk(WWFW_HEARTBEAT, ++hb, NULL, 0, m));
      drain();
    }
  }
}

static void test_interp_watchdog(void) {
  wwfw_arm arm;
  float rows[8 * 7], before[8];
  uint32_t t = 0;
  int i, max_ok = 1, limited = 0;
  wwfw_default_arm(&arm, 6);
  arm.control_rate_hz = 1000; /* 1 tick per ms */
  arm.feedback_rate_hz = 0;
  /* linear: 4 points at 100 Hz (10 ticks each), small steps */
  wwfw_init(&fw, &arm, 2);
  connect(5, 10);
  memset(rows, 0, sizeof rows);
  for (i = 0; i < 4; i++) rows[i * 7] = 0.01f * (float)(i + 1), rows[i * 7 + 6] = 0.02f * (float)(i + 1);
  CHECK(send_chunk(10, 1, 4, 100.0f, WWFW_START_AFTER, 0, rows, 7) == 0, "chunk accepted");
  run_ticks(&t, 10);
  CHECK(fabsf(fw.cmd[0] - 0.01f) < 1e-5f, "linear: row 0 reached after one period: %f", fw.cmd[0]);
  run_ticks(&t, 5);
  CHECK(fabsf(fw.cmd[0] - 0.015f) < 1e-5f, "linear: halfway between rows: %f", fw.cmd[0]);
  run_ticks(&t, 25);
  CHECK(fabsf(fw.cmd[0] - 0.04f) < 1e-5f && fw.last_done == 1, "linear: last row, chunk done: %f", fw.cmd[0]);
  CHECK(fabsf(fw.cmd[6] - 0.08f) < 1e-5f, "gripper column followed: %f", fw.cmd[6]);
  CHECK(fw.mode == WWFW_MODE_IDLE, "idle after the chunk");

  /* velocity limit: a 1 rad jump at 100 Hz asks for 100 rad/s; vmax 2 rad/s = 0.002 rad per 1 ms tick */
  for (i = 0; i < 4; i++) rows[i * 7] = 1.0f, rows[i * 7 + 6] = 0.08f;
  CHECK(send_chunk(11, 2, 4, 100.0f, WWFW_START_AFTER, 0, rows, 7) == 0, "chunk accepted");
  for (i = 0; i < 600; i++) {
    memcpy(before, fw.cmd, sizeof before);
    run_ticks(&t, 1);
    if (fabsf(fw.cmd[0] - before[0]) > 0.002f + 1e-6f) max_ok = 0;
    if (fw.faults & WWFW_F_VEL_LIMITED) limited = 1;
  }
  CHECK(max_ok, "command never moves faster than vmax");
  CHECK(limited, "VEL_LIMITED reported");
  CHECK(fabsf(fw.cmd[0] - 1.0f) < 1e-4f, "limited command still arrives: %f", fw.cmd[0]);

  /* cubic passes through its rows */
  for (i = 0; i < 6; i++) rows[i * 7] = 1.0f + 0.005f * (float)((i * i) % 5);
  CHECK(send_chunk(12, 3, 6, 100.0f, WWFW_START_AFTER, WWFW_FMT_CUBIC, rows, 7) == 0, "cubic accepted");
  for (i = 0; i < 5; i++) {
    run_ticks(&t, 10);
    CHECK(fabsf(fw.cmd[0] - rows[i * 7]) < 1e-4f, "cubic through row %d: %f vs %f", i, fw.cmd[0], rows[i * 7]);
  }
  run_ticks(&t, 20);

  /* replace: a long chunk is preempted by a replacing one */
  for (i = 0; i < 8; i++) rows[i * 7] = 1.0f;
  CHECK(send_chunk(13, 4, 8, 10.0f, WWFW_START_AFTER, 0, rows, 7) == 0, "long chunk");
  run_ticks(&t, 50);
  CHECK(fw.active && fw.cur.id == 4, "long chunk playing");
  for (i = 0; i < 2; i++) rows[i * 7] = 0.9f;
  CHECK(send_chunk(14, 5, 2, 100.0f, WWFW_START_REPLACE, 0, rows, 7) == 0, "replacing chunk");
  run_ticks(&t, 1);
  CHECK(fw.active && fw.cur.id == 5 && fw.c_read == fw.c_write, "replaced at once, nothing left of the old");
  run_ticks(&t, 100);
  CHECK(fw.last_done == 5 && fabsf(fw.cmd[0] - 0.9f) < 1e-4f, "replacement played: %f", fw.cmd[0]);

  /* full queue: BUFFER_FULL does not consume the sequence number; a bad chunk does */
  {
    static float zeros[30 * 7];
    uint16_t seq = 15;
    int k;
    uint8_t r = 0;
    for (k = 0; k < 40 && r == 0; k++) {
      r = send_chunk(seq, (uint16_t)(100 + k), 30, 1.0f, WWFW_START_AFTER, 0, zeros, 7);
      if (r == 0) seq++;
    }
    CHECK(r == WWFW_NACK_BUFFER_FULL && fw.rx_expected == seq, "buffer full after %d chunks, seq kept", k - 1);
    CHECK(k - 1 == (int)(WWFW_QUEUE_POINTS / 30) || k - 1 == (int)(WWFW_QUEUE_POINTS / 30) - 1, "filled: %d", k - 1);
    CHECK(fw.c_write - fw.c_read <= WWFW_MAX_CHUNKS, "chunk table bounded");
    wwfw_hold(&fw, WWFW_F_HOLD);
    r = send_chunk(seq, 200, 1, 0.0f, WWFW_START_AFTER, 0, zeros, 7);
    CHECK(r == WWFW_NACK_BAD_CHUNK && fw.rx_expected == seq + 1, "rate 0 refused, seq consumed");
  }

  /* watchdog: the last valid frame arrived at time t_last */
  {
    uint32_t t_last;
    wwfw_init(&fw, &arm, 3);
    t = 1000;
    wwfw_tick(&fw, t);
    connect(6, 0);
    t_last = fw.last_valid_ms;
    while (t < t_last + arm.watchdog_hold_ms - 1) wwfw_tick(&fw, ++t);
    CHECK(fw.mode != WWFW_MODE_HOLD, "no hold before the deadline");
    wwfw_tick(&fw, ++t);
    CHECK(fw.mode == WWFW_MODE_HOLD && (fw.faults & WWFW_F_WATCHDOG_HOLD), "hold at %u ms", t - t_last);
    while (t < t_last + arm.watchdog_estop_ms - 1) wwfw_tick(&fw, ++t);
    CHECK(fw.mode == WWFW_MODE_HOLD, "still holding before the second deadline");
    wwfw_tick(&fw, ++t);
    CHECK(fw.mode == WWFW_MODE_ESTOP && (fw.faults & WWFW_F_WATCHDOG_ESTOP), "e-stop at %u ms", t - t_last);
    CHECK(send_chunk(0, 9, 1, 50.0f, 0, 0, rows, 7) == WWFW_NACK_ESTOPPED, "chunks refused in e-stop");
  }
  drain();
}

/* ---- the velocity limit holds on every tick, across space switches (issue 12, item 1) ---------------- */
static double worst_ratio = 0.0;
static int vel_violations = 0, pos_violations = 0;
/* per-space view of the command: joint columns, pose columns, the gripper */
static void space_cmds(const wwfw *f, float *joint, float *ee, float *grip) {
  const float *j = f->space == WWFW_SPACE_JOINT ? f->cmd : f->cmd_other;
  const float *e = f->space == WWFW_SPACE_EE ? f->cmd : f->cmd_other;
  memcpy(joint, j, sizeof(float) * WWFW_MAX_COLS);
  memcpy(ee, e, sizeof(float) * WWFW_MAX_COLS);
  *grip = f->arm.has_gripper ? f->cmd[f->ncols - 1] : 0.0f;
}
static void check_step(float before, float after, const wwfw_limit *l, float dt) {
  double ratio = fabs((double)after - (double)before) / ((double)l->vmax * dt);
  if (!(after == after) || after < l->lo || after > l->hi) pos_violations++;
  if (ratio > worst_ratio) worst_ratio = ratio;
  if (ratio > 1.0 + 1e-4) vel_violations++;
}
static void ticks_checked(uint32_t *t, int n) {
  int i;
  uint8_t c, nj = fw.arm.n_joints;
  float dt = 1.0f / (float)fw.arm.control_rate_hz;
  for (i = 0; i < n; i++) {
    float j0[WWFW_MAX_COLS], e0[WWFW_MAX_COLS], g0, j1[WWFW_MAX_COLS], e1[WWFW_MAX_COLS], g1;
    space_cmds(&fw, j0, e0, &g0);
    run_ticks(t, 1);
    space_cmds(&fw, j1, e1, &g1);
    for (c = 0; c < nj; c++) check_step(j0[c], j1[c], &fw.arm.joint[c], dt);
    for (c = 0; c < 6; c++) check_step(e0[c], e1[c], &fw.arm.ee[c], dt);
    if (fw.arm.has_gripper) check_step(g0, g1, &fw.arm.joint[nj], dt);
  }
}

static void test_space_switch(void) {
  wwfw_arm arm;
  static float rows[8 * 8];
  uint32_t t = 0;
  uint16_t seq = 0;
  int i;
  wwfw_default_arm(&arm, 7); /* 7 joints: joint space column 6 is joint 7, end-effector column 6 the gripper */
  arm.control_rate_hz = 1000;
  arm.feedback_rate_hz = 0;
  wwfw_init(&fw, &arm, 4);
  connect(8, seq);
  /* joint 7 to 2.5 rad (allowed in joint space, far outside the gripper's 0..1), gripper 0.2 */
  memset(rows, 0, sizeof rows);
  for (i = 0; i < 4; i++) rows[i * 8 + 6] = 2.5f, rows[i * 8 + 7] = 0.2f;
  CHECK(send_chunk(seq++, 1, 4, 100.0f, WWFW_START_AFTER, 0, rows, 8) == 0, "joint chunk");
  ticks_checked(&t, 1400);
  CHECK(fabsf(fw.cmd[6] - 2.5f) < 1e-4f && fw.space == WWFW_SPACE_JOINT, "joint 7 at 2.5: %f", fw.cmd[6]);
  /* end-effector chunk queued after it: x to 0.5, gripper to 0.9 */
  memset(rows, 0, sizeof rows);
  for (i = 0; i < 4; i++) rows[i * 7 + 0] = 0.5f, rows[i * 7 + 6] = 0.9f;
  CHECK(send_chunk(seq++, 2, 4, 100.0f, WWFW_START_AFTER, WWFW_FMT_EE, rows, 7) == 0, "ee chunk");
  ticks_checked(&t, 5);
  CHECK(fw.space == WWFW_SPACE_EE && fw.ncols == 7, "switched to the end-effector space");
  CHECK(fabsf(fw.cmd_other[6] - 2.5f) < 1e-4f, "joint 7 keeps its command: %f", fw.cmd_other[6]);
  ticks_checked(&t, 800);
  CHECK(fabsf(fw.cmd[0] - 0.5f) < 1e-4f && fabsf(fw.cmd[6] - 0.9f) < 1e-4f, "ee chunk played: x %f, gripper %f",
        fw.cmd[0], fw.cmd[6]);
  /* a joint chunk replaces a slow ee chunk mid-way, then an at-time ee chunk preempts it */
  for (i = 0; i < 4; i++) rows[i * 7 + 0] = -0.5f, rows[i * 7 + 6] = 0.1f;
  CHECK(send_chunk(seq++, 3, 4, 2.0f, WWFW_START_AFTER, WWFW_FMT_EE, rows, 7) == 0, "slow ee chunk");
  ticks_checked(&t, 300);
  memset(rows, 0, sizeof rows);
  for (i = 0; i < 4; i++) rows[i * 8 + 6] = -2.0f, rows[i * 8 + 0] = 1.0f, rows[i * 8 + 7] = 1.0f;
  CHECK(send_chunk(seq++, 4, 4, 50.0f, WWFW_START_REPLACE, 0, rows, 8) == 0, "replacing joint chunk");
  ticks_checked(&t, 300);
  CHECK(fw.space == WWFW_SPACE_JOINT && fw.cur.id == 4, "replaced across spaces");
  memset(rows, 0, sizeof rows);
  for (i = 0; i < 2; i++) rows[i * 7 + 2] = -0.8f, rows[i * 7 + 6] = 0.0f;
  {
    static uint8_t body[WWFW_MAX_MSG], m[WWFW_MAX_MSG + 8];
    size_t k = 18, r;
    uint32_t u;
    float rate = 100.0f;
    wwfw_wr16(body, 5);
    wwfw_wr32(body + 2, 0);
    wwfw_wr16(body + 6, 2);
    memcpy(&u, &rate, 4);
    wwfw_wr32(body + 8, u);
    body[12] = WWFW_START_AT_TIME;
    body[13] = WWFW_ENC_F32 | WWFW_FMT_EE;
    wwfw_wr32(body + 14, t + 50);
    for (r = 0; r < 14; r++, k += 4) {
      memcpy(&u, &rows[r], 4);
      wwfw_wr32(body + k, u);
    }
    wwfw_handle_message(&fw, m, mk(WWFW_CHUNK_BEGIN, seq++, body, k, m));
    drain();
  }
  ticks_checked(&t, 100);
  CHECK(fw.space == WWFW_SPACE_EE && fw.cur.id == 5, "at-time ee chunk preempted the joint chunk");
  /* a hold mid-move, then a chunk in the other space */
  for (i = 0; i < 4; i++) memset(rows + i * 8, 0, 8 * sizeof(float)), rows[i * 8 + 3] = 2.8f, rows[i * 8 + 7] = 0.5f;
  CHECK(send_chunk(seq++, 6, 4, 10.0f, WWFW_START_REPLACE, 0, rows, 8) == 0, "joint chunk");
  ticks_checked(&t, 200);
  wwfw_hold(&fw, WWFW_F_HOLD);
  ticks_checked(&t, 10);
  memset(rows, 0, sizeof rows);
  for (i = 0; i < 4; i++) rows[i * 7 + 1] = 0.7f, rows[i * 7 + 6] = 0.0f;
  CHECK(send_chunk(seq++, 7, 4, 100.0f, WWFW_START_AFTER, WWFW_FMT_EE | WWFW_FMT_CUBIC, rows, 7) == 0, "ee after hold");
  ticks_checked(&t, 1500);
  CHECK(fabsf(fw.cmd[1] - 0.7f) < 1e-4f && fw.space == WWFW_SPACE_EE, "ee chunk after the hold played: %f", fw.cmd[1]);
  CHECK(vel_violations == 0 && pos_violations == 0, "velocity limit held on every tick: %d violations, worst %.3f x vmax",
        vel_violations, worst_ratio);
  printf("space switches: worst step %.4f x vmax per tick\n", worst_ratio);
}

/* ---- flow control counts chunk slots, sessions own the sequence, rate bounds (issue 12, items 2, 3, 6) --- */
static uint8_t send_raw(uint8_t type, uint16_t seq, const uint8_t *body, size_t n) {
  static uint8_t m[WWFW_MAX_MSG + 8];
  uint8_t t = 0;
  drain();
  wwfw_handle_message(&fw, m, mk(type, seq, body, n, m));
  if (!pop_type(&t, last_reply)) return 0;
  drain();
  return t;
}

static void test_slots_sessions_rates(void) {
  wwfw_arm arm;
  static float one[8];
  uint16_t seq = 40;
  uint8_t hello[2] = {WWFW_PROTO_VERSION, 0}, r = 0;
  int k;
  uint32_t t = 0;
  wwfw_default_arm(&arm, 6);
  arm.control_rate_hz = 1000;
  arm.feedback_rate_hz = 0;
  wwfw_init(&fw, &arm, 5);
  connect(1111, seq);
  for (k = 0; k < (int)WWFW_MAX_CHUNKS; k++) CHECK(send_chunk(seq++, (uint16_t)k, 1, 1.0f, 0, 0, one, 7) == 0, "slot %d", k);
  CHECK(wwfw_free_chunks(&fw) == 0, "16 one-point chunks fill the chunk table");
  r = send_chunk(seq, 99, 1, 1.0f, 0, 0, one, 7);
  CHECK(r == WWFW_NACK_BUFFER_FULL && fw.rx_expected == seq, "17th chunk: buffer full, seq kept (%u)", r);
  CHECK(last_reply[14] == 0 && wwfw_rd16(last_reply + 12) == WWFW_QUEUE_POINTS - 16, "NACK reports 0 slots, %u points",
        wwfw_rd16(last_reply + 12));
  run_ticks(&t, 1001); /* one point at 1 point/s: the first chunk plays out and frees its slot */
  CHECK(wwfw_free_chunks(&fw) >= 1, "a slot is free once a chunk has played");
  CHECK(send_chunk(seq++, 99, 1, 1.0f, 0, 0, one, 7) == 0, "and the chunk is taken");

  /* rate bounds: 1e-30 points/s would hold the queue for ever; NaN and too fast are refused as well */
  {
    const float bad[] = {1e-30f, 0.999f, 0.0f, -1.0f, NAN, 1001.0f};
    size_t i;
    wwfw_hold(&fw, WWFW_F_HOLD);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      r = send_chunk(seq, 200, 1, bad[i], 0, 0, one, 7);
      CHECK(r == WWFW_NACK_BAD_CHUNK && fw.rx_expected == (uint16_t)(seq + 1), "rate %g refused (%u)", bad[i], r);
      seq++;
    }
    CHECK(send_chunk(seq++, 201, 1, WWFW_MIN_RATE_HZ, 0, 0, one, 7) == 0, "the minimum rate is accepted");
  }

  /* a second writer: its HELLO and chunks are refused while the owner is alive, its e-stop is not */
  {
    uint16_t expected = fw.rx_expected;
    uint32_t queued = fw.c_write;
    g_session = 2222;
    CHECK(send_raw(WWFW_HELLO, (uint16_t)(expected + 500), hello, 2) == WWFW_NACK &&
              last_reply[4] == WWFW_NACK_NOT_OWNER && last_session == 2222u,
          "foreign HELLO refused, NACK addressed to it");
    CHECK(send_chunk(expected, 300, 1, 10.0f, 0, 0, one, 7) == WWFW_NACK_NOT_OWNER, "foreign chunk refused");
    CHECK(fw.rx_expected == expected && fw.c_write == queued && fw.session == 1111u, "owner's sequence untouched");
    g_session = 1111;
    CHECK(send_chunk(expected, 301, 1, 10.0f, 0, 0, one, 7) == 0, "the owner's next chunk is applied");
    /* the owner goes quiet: the foreign heartbeats do not feed the watchdog, the takeover waits for it */
    g_session = 2222;
    t = fw.now_ms;
    for (k = 0; k < (int)arm.watchdog_hold_ms + 5; k++) {
      uint8_t m[32], ack[2] = {0, 0};
      wwfw_tick(&fw, ++t);
      if (k % 20 == 0) wwfw_handle_message(&fw, m, mk(WWFW_HEARTBEAT, (uint16_t)k, ack, 2, m)), drain();
    }
    CHECK(fw.mode == WWFW_MODE_HOLD && (fw.faults & WWFW_F_WATCHDOG_HOLD), "foreign heartbeats kept nothing alive");
    CHECK(send_raw(WWFW_HELLO, 7000, hello, 2) == WWFW_ARM_INFO && fw.session == 2222u && fw.rx_expected == 7000,
          "a new session is taken once the owner has been quiet for the hold time");
    g_session = 1111;
    CHECK(send_raw(WWFW_HEARTBEAT, 60000, NULL, 0) == WWFW_NACK && last_reply[4] == WWFW_NACK_NOT_OWNER,
          "the old owner is now the foreign one");
    CHECK(send_raw(WWFW_ESTOP, 1, NULL, 0) == WWFW_STATE && fw.mode == WWFW_MODE_ESTOP, "anyone may e-stop");
  }
}

/* BYE (issue 14): the owner ends its session cleanly; the watchdog is for a host that vanishes mid-stream */
static void test_bye(void) {
  wwfw_arm arm;
  static float one[20 * 7]; /* zeros: inside every joint limit */
  uint16_t seq = 900;
  uint8_t hello[2] = {WWFW_PROTO_VERSION, 0};
  uint32_t t = 0;
  int k;
  wwfw_default_arm(&arm, 6);
  arm.control_rate_hz = 1000;
  arm.feedback_rate_hz = 0;
  wwfw_init(&fw, &arm, 9);
  connect(3333, seq);
  CHECK(send_chunk(seq++, 1, 1, 100.0f, 0, 0, one, 7) == 0, "a chunk");
  run_ticks(&t, 100); /* it plays out: idle, nothing queued */
  CHECK(fw.mode == WWFW_MODE_IDLE && fw.last_done == 1, "played (mode %u)", fw.mode);
  CHECK(send_raw(WWFW_BYE, seq, NULL, 0) == WWFW_ACK && wwfw_rd16(last_reply) == seq && fw.released, "BYE acknowledged");
  CHECK(send_raw(WWFW_BYE, seq, NULL, 0) == WWFW_ACK && wwfw_rd16(last_reply) == seq, "a repeated BYE: the same ACK");
  seq++;
  for (k = 0; k < (int)arm.watchdog_estop_ms * 3; k++) wwfw_tick(&fw, ++t); /* silence, for a long time */
  CHECK(fw.mode == WWFW_MODE_IDLE && !(fw.faults & (WWFW_F_WATCHDOG_HOLD | WWFW_F_WATCHDOG_ESTOP)),
        "no watchdog hold or e-stop after BYE (mode %u faults %x)", fw.mode, fw.faults);
  CHECK(send_raw(WWFW_HEARTBEAT, 5, NULL, 0) == WWFW_NACK && last_reply[4] == WWFW_NACK_NOT_OWNER,
        "the session that said BYE owns nothing");
  g_session = 4444; /* the next host takes the link at once, no hold time to wait for */
  CHECK(send_raw(WWFW_HELLO, 100, hello, 2) == WWFW_ARM_INFO && fw.session == 4444u && !fw.released, "next session");
  seq = 100;
  CHECK(send_chunk(seq++, 2, 20, 1.0f, 0, 0, one, 7) == 0, "a long chunk");
  run_ticks(&t, 10);
  CHECK(fw.mode == WWFW_MODE_RUNNING, "running");
  CHECK(send_raw(WWFW_BYE, seq++, NULL, 0) == WWFW_ACK && fw.mode == WWFW_MODE_HOLD && !fw.active &&
            fw.fates[(uint16_t)(fw.fate_next - 1u) % WWFW_FATES].fate == WWFW_FATE_HOLD,
        "BYE mid-chunk: nobody watches the rest, it is dropped (fate hold), the arm stays");
  for (k = 0; k < (int)arm.watchdog_estop_ms * 2; k++) wwfw_tick(&fw, ++t);
  CHECK(fw.mode == WWFW_MODE_HOLD && !(fw.faults & WWFW_F_WATCHDOG_ESTOP), "and no e-stop follows");
  /* without BYE the watchdog still trips: a host that vanished */
  g_session = 5555;
  CHECK(send_raw(WWFW_HELLO, 10, hello, 2) == WWFW_ARM_INFO, "another session");
  for (k = 0; k < (int)arm.watchdog_estop_ms + 5; k++) wwfw_tick(&fw, ++t);
  CHECK(fw.mode == WWFW_MODE_ESTOP && (fw.faults & WWFW_F_WATCHDOG_ESTOP), "a silent owner: watchdog e-stop");
}

/* fuzz: random mutations of valid framed chunks; only the unmutated ones may ever be queued */
static int fuzz_queued = 0;
static void count_queued(void *ctx, const char *line) {
  (void)ctx;
  if (strncmp(line, "queued ", 7) == 0) fuzz_queued++;
}
static void test_fuzz(void) {
  wwfw_arm arm;
  wwfw_serial_rx rx;
  static uint8_t body[WWFW_MAX_MSG], m[WWFW_MAX_MSG], wire[2 * WWFW_MAX_MSG], noise[64];
  int it, clean = 0;
  uint16_t seq = 0;
  size_t k, n, w;
  wwfw_default_arm(&arm, 6);
  fw.log = count_queued;
  wwfw_init(&fw, &arm, 9);
  memset(&rx, 0, sizeof rx);
  connect(77, 0);
  srand(7);
  for (it = 0; it < 20000; it++) {
    float v;
    uint32_t u;
    wwfw_wr16(body, (uint16_t)it);
    wwfw_wr32(body + 2, 0);
    wwfw_wr16(body + 6, 2);
    v = 50.0f;
    memcpy(&u, &v, 4);
    wwfw_wr32(body + 8, u);
    body[12] = WWFW_START_REPLACE;
    body[13] = WWFW_ENC_F32;
    wwfw_wr32(body + 14, 0);
    for (k = 0; k < 14; k++) {
      v = 0.001f * (float)(rand() % 1000);
      memcpy(&u, &v, 4);
      wwfw_wr32(body + 18 + 4 * k, u);
    }
    n = mk(WWFW_CHUNK_BEGIN, fw.rx_expected, body, 18 + 56, m);
    w = wwfw_serial_frame(m, n, wire);
    if (rand() % 4 == 0) {
      clean++;
    } else { /* flips, a cut, or garbage: never a queued chunk */
      int kind = rand() % 3;
      if (kind == 0) {
        int f, nf = 1 + rand() % 4;
        for (f = 0; f < nf; f++) wire[rand() % (w - 1)] ^= (uint8_t)(1u << (rand() % 8));
      } else if (kind == 1) {
        w = 1 + (size_t)rand() % (w - 2); /* at least the last data byte is lost */
        wire[w++] = 0;
      } else { /* garbage with no delimiter right before the frame: the frame's leading 0x00 cuts it off */
        for (k = 0; k < sizeof noise; k++) noise[k] = (uint8_t)(1 + rand() % 255);
        wwfw_serial_feed(&fw, &rx, noise, sizeof noise);
        clean++;
      }
      if (kind == 0 && wire[0] == 0) { /* two flips of the same bit cancel out: then the frame is intact */
        uint8_t d[WWFW_MAX_MSG + 8];
        size_t dn = wwfw_cobs_decode(wire + 1, w - 2, d);
        if (dn == n && memcmp(d, m, n) == 0) clean++;
      }
    }
    wwfw_serial_feed(&fw, &rx, wire, w);
    wwfw_serial_feed(&fw, &rx, (const uint8_t *)"", 1); /* a delimiter: resynchronise after garbage */
    drain();
    wwfw_tick(&fw, (uint32_t)it); /* keeps the watchdog fed by the valid frames, plays the chunks */
    (void)seq;
  }
  CHECK(fuzz_queued == clean, "queued %d chunks, %d sent intact", fuzz_queued, clean);
  CHECK(fw.crc_errors + fw.frame_errors > 5000, "CRC and framing errors counted: %lu", (unsigned long)(fw.crc_errors + fw.frame_errors));
  fw.log = NULL;
}

int main(int argc, char **argv) {
  test_basics();
  test_can();
  test_golden(argc > 1 ? argv[1] : "firmware_bridge/golden/vectors.txt");
  test_interp_watchdog();
  test_space_switch();
  test_slots_sessions_rates();
  test_bye();
  test_fuzz();
  printf("%s: %d checks, %d failures\n", failures ? "FAILED" : "ok", checks, failures);
  return failures ? 1 : 0;
}
