/* The firmware core: message dispatch, sequence numbers, chunk queue, watchdog (PROTOCOL.md).
 * The interpolator lives in interp.c; bytes on the wire in wire.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "wwfw.h"

void wwfw_interp_tick(wwfw *fw);      /* interp.c */
void wwfw_stop_motion(wwfw *fw);      /* interp.c */

static float rdf(const uint8_t *p) {
  uint32_t u = wwfw_rd32(p);
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static void wrf(uint8_t *p, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  wwfw_wr32(p, u);
}

static void logf_(wwfw *fw, const char *fmt, ...) {
  char line[160];
  va_list ap;
  if (!fw->log) return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fw->log(fw->log_ctx, line);
}

void wwfw_default_arm(wwfw_arm *arm, uint8_t n_joints) {
  uint8_t j;
  memset(arm, 0, sizeof *arm);
  if (n_joints < 1) n_joints = 1;
  if (n_joints > WWFW_MAX_JOINTS) n_joints = WWFW_MAX_JOINTS;
  arm->n_joints = n_joints;
  arm->has_gripper = 1;
  arm->control_rate_hz = 500;
  arm->feedback_rate_hz = 50;
  arm->watchdog_hold_ms = 250;
  arm->watchdog_estop_ms = 1000;
  for (j = 0; j < n_joints; j++) arm->joint[j] = (wwfw_limit){-2.9f, 2.9f, 2.0f};
  arm->joint[n_joints] = (wwfw_limit){0.0f, 1.0f, 4.0f};
  for (j = 0; j < 3; j++) arm->ee[j] = (wwfw_limit){-1.0f, 1.0f, 1.0f};
  for (j = 3; j < 6; j++) arm->ee[j] = (wwfw_limit){-3.2f, 3.2f, 3.0f};
  arm->ee[6] = (wwfw_limit){0.0f, 1.0f, 4.0f};
}

uint8_t wwfw_cols(const wwfw *fw, uint8_t space) {
  return (uint8_t)((space == WWFW_SPACE_EE ? 6u : fw->arm.n_joints) + fw->arm.has_gripper);
}
static uint8_t cols_for(const wwfw *fw, uint8_t fmt) {
  return wwfw_cols(fw, (fmt & WWFW_FMT_EE) ? WWFW_SPACE_EE : WWFW_SPACE_JOINT);
}
const wwfw_limit *wwfw_limits(const wwfw *fw, uint8_t fmt) { return (fmt & WWFW_FMT_EE) ? fw->arm.ee : fw->arm.joint; }

/* ---- chunk fates: every chunk the firmware queued (or began receiving) ends in exactly one fate ------ */
void wwfw_fate_record(wwfw *fw, uint16_t id, uint8_t fate, uint16_t rows) {
  wwfw_fate *f = &fw->fates[fw->fate_next % WWFW_FATES];
  f->id = id, f->fate = fate, f->rows = rows;
  fw->fate_next++;
}

static const char *fate_name(uint8_t fate) {
  static const char *names[] = {"?", "played", "hold", "estop", "replaced", "reset", "abandoned"};
  return fate <= WWFW_FATE_ABANDONED ? names[fate] : "?";
}

/* the partial chunk is dropped: CHUNK_DATA that continues it is answered NACK 8, not "bad chunk" */
static void drop_open(wwfw *fw, uint8_t fate) {
  if (!fw->open_valid) return;
  logf_(fw, "abandoned chunk=%u rows=%u reason=%s", fw->open.id, fw->open.received, fate_name(fate));
  wwfw_fate_record(fw, fw->open.id, fate, 0);
  fw->dropped_id = fw->open.id;
  fw->dropped_valid = 1;
  fw->open_valid = 0;
}

static void drop_queue(wwfw *fw, uint8_t fate) {
  if (fw->active) wwfw_fate_record(fw, fw->cur.id, fate, fw->idx);
  while (fw->c_read != fw->c_write) {
    wwfw_chunk *ch = &fw->chunks[fw->c_read % WWFW_MAX_CHUNKS];
    logf_(fw, "dropped chunk=%u reason=%s", ch->id, fate_name(fate));
    wwfw_fate_record(fw, ch->id, fate, 0);
    fw->c_read++;
  }
  drop_open(fw, fate);
  fw->q_read = fw->q_write;
}

void wwfw_init(wwfw *fw, const wwfw_arm *arm, uint32_t boot_id) {
  void (*log)(void *, const char *) = fw->log;
  void *log_ctx = fw->log_ctx;
  uint8_t c;
  memset(fw, 0, sizeof *fw);
  fw->log = log;
  fw->log_ctx = log_ctx;
  fw->arm = *arm;
  if (fw->arm.n_joints < 1) fw->arm.n_joints = 1;
  if (fw->arm.n_joints > WWFW_MAX_JOINTS) fw->arm.n_joints = WWFW_MAX_JOINTS;
  fw->arm.has_gripper = fw->arm.has_gripper ? 1u : 0u;
  if (fw->arm.control_rate_hz == 0) fw->arm.control_rate_hz = 1;
  /* the gripper is one actuator: the same limits in both spaces, so its command never jumps on a switch */
  if (fw->arm.has_gripper) fw->arm.ee[6] = fw->arm.joint[fw->arm.n_joints];
  fw->space = WWFW_SPACE_JOINT;
  fw->ncols = wwfw_cols(fw, WWFW_SPACE_JOINT);
  fw->boot_id = boot_id;
  fw->faults = WWFW_F_BOOTED;
  fw->last_done = 0xFFFFu;
  for (c = 0; c < WWFW_MAX_COLS; c++) {
    const wwfw_limit *l = &fw->arm.joint[c], *e = &fw->arm.ee[c];
    float v = 0.0f, w = 0.0f;
    if (c < fw->ncols) v = v < l->lo ? l->lo : v > l->hi ? l->hi : v;
    if (c < wwfw_cols(fw, WWFW_SPACE_EE)) w = w < e->lo ? e->lo : w > e->hi ? e->hi : w;
    fw->cmd[c] = fw->meas_pos[c] = fw->p0[c] = fw->p1[c] = fw->p_prev[c] = v;
    fw->cmd_other[c] = fw->meas_other[c] = w;
  }
  logf_(fw, "boot id=%lu", (unsigned long)boot_id);
}

/* ---- replies ------------------------------------------------------------------------------------- */
static uint8_t *out_begin(wwfw *fw, uint8_t type, uint32_t session) {
  uint8_t *m;
  if (fw->out_write - fw->out_read >= WWFW_OUTBOX) { /* host not reading: drop the oldest reply */
    fw->out_read++;
    fw->out_dropped++;
  }
  m = fw->out[fw->out_write % WWFW_OUTBOX];
  m[0] = type;
  wwfw_wr16(m + 1, fw->tx_seq++);
  wwfw_wr32(m + 3, session);
  return m + WWFW_HEADER;
}
static void out_end(wwfw *fw, size_t body) {
  uint8_t *m = fw->out[fw->out_write % WWFW_OUTBOX];
  size_t n = WWFW_HEADER + body;
  wwfw_wr32(m + n, wwfw_crc32c(m, n));
  fw->out_len[fw->out_write % WWFW_OUTBOX] = (uint16_t)(n + WWFW_CRC);
  fw->out_write++;
}

int wwfw_outbox_pop(wwfw *fw, uint8_t *msg, size_t *n) {
  if (fw->out_read == fw->out_write) return 0;
  *n = fw->out_len[fw->out_read % WWFW_OUTBOX];
  memcpy(msg, fw->out[fw->out_read % WWFW_OUTBOX], *n);
  fw->out_read++;
  return 1;
}

static uint16_t level(const wwfw *fw) { return (uint16_t)(fw->q_write - fw->q_read); }
static uint16_t free_points(const wwfw *fw) {
  uint32_t used = fw->q_write - fw->q_read + (fw->open_valid ? fw->open.received : 0u);
  return (uint16_t)(WWFW_QUEUE_POINTS - used);
}
/* chunk slots: complete chunks waiting to play and the chunk being received each take one */
uint16_t wwfw_free_chunks(const wwfw *fw) {
  uint32_t used = fw->c_write - fw->c_read + (fw->open_valid ? 1u : 0u);
  return (uint16_t)(used >= WWFW_MAX_CHUNKS ? 0u : WWFW_MAX_CHUNKS - used);
}

/* replies name the session of the message they answer (the sender drops what is not addressed to it) */
static void record_final(wwfw *fw, uint16_t seq, uint8_t reason, uint16_t chunk, uint16_t row, uint8_t col) {
  if (!fw->recording) return;
  fw->final_seq = seq, fw->final_reason = reason, fw->final_chunk = chunk, fw->final_row = row, fw->final_col = col;
  fw->final_valid = 1;
}

static void send_ack(wwfw *fw, uint32_t session, uint16_t seq, uint16_t chunk, uint16_t rows) {
  uint8_t *b;
  record_final(fw, seq, 0, chunk, rows, 0);
  b = out_begin(fw, WWFW_ACK, session);
  wwfw_wr16(b, seq);
  wwfw_wr16(b + 2, chunk);
  wwfw_wr16(b + 4, rows);
  wwfw_wr16(b + 6, level(fw));
  wwfw_wr16(b + 8, free_points(fw));
  b[10] = (uint8_t)wwfw_free_chunks(fw);
  out_end(fw, 11);
}

static void send_nack(wwfw *fw, uint32_t session, uint16_t seq, uint8_t reason, uint16_t chunk, uint16_t row,
                      uint8_t col) {
  uint8_t *b;
  record_final(fw, seq, reason, chunk, row, col);
  b = out_begin(fw, WWFW_NACK, session);
  wwfw_wr16(b, seq);
  wwfw_wr16(b + 2, fw->rx_expected);
  b[4] = reason;
  wwfw_wr16(b + 5, chunk);
  wwfw_wr16(b + 7, row);
  b[9] = col;
  wwfw_wr16(b + 10, level(fw));
  wwfw_wr16(b + 12, free_points(fw));
  b[14] = (uint8_t)wwfw_free_chunks(fw);
  out_end(fw, 15);
}

static void send_arm_info(wwfw *fw) {
  uint8_t *b = out_begin(fw, WWFW_ARM_INFO, fw->session);
  const wwfw_arm *a = &fw->arm;
  size_t k = 27;
  uint8_t j;
  b[0] = WWFW_PROTO_VERSION;
  b[1] = a->n_joints;
  b[2] = a->has_gripper;
  wwfw_wr16(b + 3, a->control_rate_hz);
  wwfw_wr16(b + 5, a->feedback_rate_hz);
  wwfw_wr16(b + 7, WWFW_QUEUE_POINTS);
  wwfw_wr16(b + 9, WWFW_MAX_CHUNKS);
  wwfw_wr16(b + 11, WWFW_MAX_MSG);
  wwfw_wr16(b + 13, a->watchdog_hold_ms);
  wwfw_wr16(b + 15, a->watchdog_estop_ms);
  wwfw_wr32(b + 17, fw->boot_id);
  wwfw_wr16(b + 21, fw->rx_expected);
  wwfw_wr16(b + 23, fw->fate_next);
  wwfw_wr16(b + 25, (uint16_t)(WWFW_MIN_RATE_HZ * 1000.0f)); /* slowest point rate, millihertz */
  for (j = 0; j < a->n_joints + a->has_gripper; j++, k += 12) {
    wrf(b + k, a->joint[j].lo), wrf(b + k + 4, a->joint[j].hi), wrf(b + k + 8, a->joint[j].vmax);
  }
  for (j = 0; j < 6 + a->has_gripper; j++, k += 12) {
    wrf(b + k, a->ee[j].lo), wrf(b + k + 4, a->ee[j].hi), wrf(b + k + 8, a->ee[j].vmax);
  }
  out_end(fw, k);
}

static void send_state(wwfw *fw, uint32_t session) {
  uint8_t *b = out_begin(fw, WWFW_STATE, session);
  uint8_t c;
  size_t k = 30;
  wwfw_wr32(b, fw->now_ms);
  wwfw_wr32(b + 4, fw->boot_id);
  b[8] = fw->mode;
  b[9] = fw->ncols;
  wwfw_wr16(b + 10, fw->faults);
  wwfw_wr16(b + 12, level(fw));
  wwfw_wr16(b + 14, free_points(fw));
  b[16] = (uint8_t)wwfw_free_chunks(fw);
  b[17] = fw->space;
  wwfw_wr16(b + 18, fw->active ? fw->cur.id : 0xFFFFu);
  wwfw_wr16(b + 20, fw->active ? fw->idx : 0u);
  wwfw_wr16(b + 22, fw->last_done);
  wwfw_wr16(b + 24, fw->rx_expected);
  wwfw_wr16(b + 26, (uint16_t)fw->crc_errors);
  wwfw_wr16(b + 28, fw->fate_next);
  for (c = 0; c < fw->ncols; c++, k += 4) wrf(b + k, fw->meas_pos[c]);
  for (c = 0; c < fw->ncols; c++, k += 4) wrf(b + k, fw->meas_vel[c]);
  out_end(fw, k);
  fw->faults &= WWFW_STICKY; /* informational flags are reported once */
}

/* FATE: the fates from index `from` on (at most the ring); the host acknowledges them in HEARTBEAT */
static void send_fates(wwfw *fw, uint16_t from) {
  uint8_t *b;
  uint16_t n = (uint16_t)(fw->fate_next - from), i;
  if (n == 0 || n >= 0x8000u) return; /* nothing new, or an acknowledgement from the future */
  if (n > WWFW_FATES) n = WWFW_FATES, from = (uint16_t)(fw->fate_next - WWFW_FATES);
  b = out_begin(fw, WWFW_FATE, fw->session);
  wwfw_wr16(b, from);
  b[2] = (uint8_t)n;
  for (i = 0; i < n; i++) {
    const wwfw_fate *f = &fw->fates[(uint16_t)(from + i) % WWFW_FATES];
    wwfw_wr16(b + 3 + 5 * i, f->id);
    b[5 + 5 * i] = f->fate;
    wwfw_wr16(b + 6 + 5 * i, f->rows);
  }
  out_end(fw, 3u + 5u * n);
  fw->fate_sent = fw->fate_next;
}
static void flush_fates(wwfw *fw) {
  if (fw->connected && fw->fate_sent != fw->fate_next) send_fates(fw, fw->fate_sent);
  fw->fate_sent = fw->fate_next;
}

/* ---- chunk queue ---------------------------------------------------------------------------------- */
uint32_t wwfw_points_crc(const wwfw *fw, const wwfw_chunk *ch) {
  /* CRC-32C over the chunk's float32 points, row-major, little-endian: the host computes the same */
  uint8_t buf[4];
  uint32_t c = 0xFFFFFFFFu, r;
  uint8_t cols = cols_for(fw, ch->fmt), j;
  for (r = 0; r < ch->len; r++) {
    for (j = 0; j < cols; j++) {
      wrf(buf, fw->points[(ch->start + r) % WWFW_QUEUE_POINTS][j]);
      c = wwfw_crc32c_update(c, buf, 4);
    }
  }
  return c ^ 0xFFFFFFFFu;
}

/* decode and check `rows` rows into the open chunk; returns 0 or a NACK reason (row/col set) */
static uint8_t store_rows(wwfw *fw, const uint8_t *p, uint16_t rows, uint16_t *bad_row, uint8_t *bad_col) {
  wwfw_chunk *ch = &fw->open;
  const wwfw_limit *lim = wwfw_limits(fw, ch->fmt);
  uint8_t cols = cols_for(fw, ch->fmt), enc = ch->fmt & 3u, j;
  uint16_t r;
  for (r = 0; r < rows; r++) {
    float *dst = fw->points[(ch->start + ch->received + r) % WWFW_QUEUE_POINTS];
    for (j = 0; j < cols; j++) {
      float v;
      if (enc == WWFW_ENC_INT16) {
        int16_t raw = (int16_t)wwfw_rd16(p);
        float center = 0.5f * (lim[j].lo + lim[j].hi), scale = (0.5f * (lim[j].hi - lim[j].lo)) / 32767.0f;
        v = raw == -32768 ? NAN : center + (float)raw * scale;
        p += 2;
      } else if (enc == WWFW_ENC_F16) {
        v = wwfw_half_to_float(wwfw_rd16(p));
        p += 2;
      } else {
        v = rdf(p);
        p += 4;
      }
      if (v != v || v < lim[j].lo || v > lim[j].hi) {
        *bad_row = (uint16_t)(ch->received + r);
        *bad_col = j;
        return v != v ? WWFW_NACK_BAD_CHUNK : WWFW_NACK_LIMIT;
      }
      dst[j] = v;
    }
  }
  ch->received = (uint16_t)(ch->received + rows);
  return 0;
}

static void commit_open(wwfw *fw) {
  wwfw_chunk *ch = &fw->open;
  if (ch->mode == WWFW_START_REPLACE) { /* drop every unplayed point before it, then take over */
    while (fw->c_read != fw->c_write) {
      logf_(fw, "dropped chunk=%u reason=replaced", fw->chunks[fw->c_read % WWFW_MAX_CHUNKS].id);
      wwfw_fate_record(fw, fw->chunks[fw->c_read % WWFW_MAX_CHUNKS].id, WWFW_FATE_REPLACED, 0);
      fw->c_read++;
    }
    if (fw->active) {
      logf_(fw, "preempted chunk=%u row=%u", fw->cur.id, fw->idx);
      wwfw_fate_record(fw, fw->cur.id, WWFW_FATE_REPLACED, fw->idx);
    }
    fw->active = 0;
    fw->q_read = ch->start;
  }
  fw->q_write = ch->start + ch->len;
  fw->chunks[fw->c_write % WWFW_MAX_CHUNKS] = *ch;
  fw->c_write++;
  fw->open_valid = 0;
  if (fw->log) {
    char line[160];
    snprintf(line, sizeof line, "queued chunk=%u event=%lu len=%u cols=%u mode=%u fmt=%u crc=%08lx", ch->id,
             (unsigned long)ch->event_id, ch->len, cols_for(fw, ch->fmt), ch->mode, ch->fmt,
             (unsigned long)wwfw_points_crc(fw, ch));
    fw->log(fw->log_ctx, line);
  }
}

static void reject_open(wwfw *fw, uint32_t sess, uint16_t seq, uint8_t reason, uint16_t row, uint8_t col) {
  logf_(fw, "rejected chunk=%u reason=%u row=%u col=%u", fw->open.id, reason, row, col);
  fw->rejected_id = fw->open.id;
  fw->rejected_valid = 1;
  fw->open_valid = 0;
  fw->faults |= WWFW_F_REJECTED;
  fw->rx_expected++;
  send_nack(fw, sess, seq, reason, fw->rejected_id, row, col);
}

static void on_chunk_begin(wwfw *fw, uint32_t sess, uint16_t seq, const uint8_t *b, size_t n) {
  wwfw_chunk ch;
  uint8_t enc, cols;
  size_t row_bytes, rows;
  uint16_t bad_row = 0;
  uint8_t bad_col = 0, r;
  if (n < 18) {
    fw->rx_expected++;
    send_nack(fw, sess, seq, WWFW_NACK_BAD_MESSAGE, 0xFFFFu, 0, 0);
    return;
  }
  memset(&ch, 0, sizeof ch);
  ch.id = wwfw_rd16(b);
  ch.event_id = wwfw_rd32(b + 2);
  ch.len = wwfw_rd16(b + 6);
  ch.rate = rdf(b + 8);
  ch.mode = b[12];
  ch.fmt = b[13];
  ch.start_ms = wwfw_rd32(b + 14);
  enc = ch.fmt & 3u;
  cols = cols_for(fw, ch.fmt);
  row_bytes = (size_t)cols * (enc == WWFW_ENC_F32 ? 4u : 2u);
  rows = (n - 18) / row_bytes;
  if (fw->mode == WWFW_MODE_ESTOP) {
    fw->rx_expected++;
    send_nack(fw, sess, seq, WWFW_NACK_ESTOPPED, ch.id, 0, 0);
    return;
  }
  drop_open(fw, WWFW_FATE_ABANDONED);
  /* rate: at least WWFW_MIN_RATE_HZ (a slower chunk would hold the queue for hours), at most the control rate */
  if (ch.len == 0 || ch.len > WWFW_QUEUE_POINTS || enc > WWFW_ENC_F32 || (ch.fmt & 0xF0u) || ch.mode > 2 ||
      !(ch.rate >= WWFW_MIN_RATE_HZ) || ch.rate > (float)fw->arm.control_rate_hz || (n - 18) % row_bytes != 0 ||
      rows > ch.len) {
    fw->open = ch;
    reject_open(fw, sess, seq, WWFW_NACK_BAD_CHUNK, 0, 0);
    return;
  }
  if ((uint32_t)ch.len > free_points(fw) || wwfw_free_chunks(fw) == 0) {
    send_nack(fw, sess, seq, WWFW_NACK_BUFFER_FULL, ch.id, 0, 0); /* not consumed: the host retries later */
    return;
  }
  ch.start = fw->q_write;
  fw->open = ch;
  fw->open_valid = 1;
  fw->rejected_valid = 0;
  fw->dropped_valid = 0;
  r = store_rows(fw, b + 18, (uint16_t)rows, &bad_row, &bad_col);
  if (r) {
    reject_open(fw, sess, seq, r, bad_row, bad_col);
    return;
  }
  fw->rx_expected++;
  if (fw->open.received == fw->open.len) commit_open(fw);
  send_ack(fw, sess, seq, ch.id, (uint16_t)rows);
}

static void on_chunk_data(wwfw *fw, uint32_t sess, uint16_t seq, const uint8_t *b, size_t n) {
  uint16_t id, first, bad_row = 0;
  uint8_t cols, r, bad_col = 0;
  size_t row_bytes, rows;
  if (n < 4) {
    fw->rx_expected++;
    send_nack(fw, sess, seq, WWFW_NACK_BAD_MESSAGE, 0xFFFFu, 0, 0);
    return;
  }
  id = wwfw_rd16(b);
  first = wwfw_rd16(b + 2);
  if (fw->mode == WWFW_MODE_ESTOP || !fw->open_valid || fw->open.id != id || first != fw->open.received) {
    uint8_t why = fw->mode == WWFW_MODE_ESTOP                                        ? WWFW_NACK_ESTOPPED
                  : (!fw->open_valid || fw->open.id != id) && fw->dropped_valid && fw->dropped_id == id ? WWFW_NACK_DROPPED
                                                                                   : WWFW_NACK_BAD_CHUNK;
    fw->rx_expected++;
    send_nack(fw, sess, seq, why, id, first, 0);
    return;
  }
  cols = cols_for(fw, fw->open.fmt);
  row_bytes = (size_t)cols * ((fw->open.fmt & 3u) == WWFW_ENC_F32 ? 4u : 2u);
  rows = (n - 4) / row_bytes;
  if ((n - 4) % row_bytes != 0 || rows == 0 || rows > (size_t)(fw->open.len - fw->open.received)) {
    reject_open(fw, sess, seq, WWFW_NACK_BAD_CHUNK, first, 0);
    return;
  }
  r = store_rows(fw, b + 4, (uint16_t)rows, &bad_row, &bad_col);
  if (r) {
    reject_open(fw, sess, seq, r, bad_row, bad_col);
    return;
  }
  fw->rx_expected++;
  rows = fw->open.received;
  if (fw->open.received == fw->open.len) commit_open(fw);
  send_ack(fw, sess, seq, id, (uint16_t)rows);
}

void wwfw_hold(wwfw *fw, uint16_t why) {
  if (fw->mode == WWFW_MODE_ESTOP) return;
  drop_queue(fw, WWFW_FATE_HOLD);
  wwfw_stop_motion(fw);
  fw->mode = WWFW_MODE_HOLD;
  fw->faults |= why;
  logf_(fw, "hold faults=%u quiet=%lu prev=%ld", fw->faults, (unsigned long)(fw->now_ms - fw->last_valid_ms),
        (long)(int32_t)(fw->prev_tick_ms - fw->last_valid_ms));
}

void wwfw_estop(wwfw *fw, uint16_t why) {
  drop_queue(fw, WWFW_FATE_ESTOP);
  wwfw_stop_motion(fw);
  fw->mode = WWFW_MODE_ESTOP;
  fw->faults |= why;
  logf_(fw, "estop faults=%u quiet=%lu prev=%ld", fw->faults, (unsigned long)(fw->now_ms - fw->last_valid_ms),
        (long)(int32_t)(fw->prev_tick_ms - fw->last_valid_ms));
}

/* ---- dispatch ------------------------------------------------------------------------------------ */
static int owner_alive(const wwfw *fw) {
  return fw->connected && !fw->released && fw->now_ms - fw->owner_last_ms < (uint32_t)fw->arm.watchdog_hold_ms;
}

static void dispatch(wwfw *fw, uint8_t type, uint16_t seq, uint32_t sess, const uint8_t *b, size_t body) {
  int16_t ahead;
  if (type == WWFW_HELLO) {
    if (body < 2 || b[0] != WWFW_PROTO_VERSION || sess == 0) {
      send_nack(fw, sess, seq, WWFW_NACK_BAD_MESSAGE, 0xFFFFu, 0, 0);
      return;
    }
    if (fw->connected && sess != fw->session && owner_alive(fw)) {
      /* another writer while the owner is alive: refused, the owner's sequence stays its own */
      fw->foreign_frames++;
      logf_(fw, "refused session=%lu owner=%lu", (unsigned long)sess, (unsigned long)fw->session);
      send_nack(fw, sess, seq, WWFW_NACK_NOT_OWNER, 0xFFFFu, 0, 0);
      return;
    }
    /* a repeated HELLO of the live session changes nothing; after its BYE it starts the session afresh */
    if (!fw->connected || sess != fw->session || fw->released) {
      fw->connected = 1;
      fw->released = 0;
      fw->session = sess;
      fw->rx_expected = seq;
      fw->ctrl_valid = 0;
      fw->fate_sent = fw->fate_acked = fw->fate_next; /* a new host has no use for older fates */
      fw->final_valid = 0;
      fw->faults &= (uint16_t)~WWFW_F_BOOTED;
      logf_(fw, "hello session=%lu seq=%u", (unsigned long)sess, seq);
    }
    fw->last_valid_ms = fw->owner_last_ms = fw->now_ms;
    send_arm_info(fw);
    return;
  }
  if (fw->released && sess == fw->session && type == WWFW_BYE) { /* a repeat (its ACK was lost): the same answer */
    send_ack(fw, sess, seq, 0xFFFFu, 0);
    return;
  }
  if (fw->connected && (sess != fw->session || fw->released)) { /* a session that said BYE owns nothing */
    fw->foreign_frames++;
    if (type == WWFW_ESTOP) { /* safety first: anyone on the link may stop the arm */
      wwfw_estop(fw, WWFW_F_ESTOP);
      send_state(fw, sess);
      return;
    }
    send_nack(fw, sess, seq, WWFW_NACK_NOT_OWNER, 0xFFFFu, 0, 0);
    return;
  }
  fw->last_valid_ms = fw->owner_last_ms = fw->now_ms; /* the owner's valid frames feed the watchdog */
  if (type == WWFW_HEARTBEAT || type == WWFW_HOLD || type == WWFW_ESTOP) {
    /* control messages act at once; their own counter only filters repeats and stale copies */
    if (fw->ctrl_valid && (int16_t)(seq - fw->ctrl_last) <= 0) return;
    fw->ctrl_valid = 1;
    fw->ctrl_last = seq;
    if (type == WWFW_HOLD) wwfw_hold(fw, WWFW_F_HOLD);
    else if (type == WWFW_ESTOP) wwfw_estop(fw, WWFW_F_ESTOP);
    send_state(fw, sess);
    if (type == WWFW_HEARTBEAT && body >= 2) { /* the host's next unseen fate: resend what it lacks */
      uint16_t ack = wwfw_rd16(b);
      if ((uint16_t)(fw->fate_next - ack) <= WWFW_FATES * 2u) {
        fw->fate_acked = ack;
        send_fates(fw, ack); /* from the host's first unseen one: the new ones are in it too */
      }
    }
    return;
  }
  if (type != WWFW_CHUNK_BEGIN && type != WWFW_CHUNK_DATA && type != WWFW_RESET && type != WWFW_BYE) {
    send_nack(fw, sess, seq, WWFW_NACK_BAD_MESSAGE, 0xFFFFu, 0, 0);
    return;
  }
  /* reliable messages: exactly once, in order (go-back-N) */
  if (!fw->connected) {
    send_nack(fw, sess, seq, WWFW_NACK_NOT_READY, 0xFFFFu, 0, 0);
    return;
  }
  ahead = (int16_t)(seq - fw->rx_expected);
  if (ahead < 0) { /* a repeat of something already applied: answer again, apply nothing */
    if (fw->final_valid && seq == fw->final_seq) { /* the last one: its own answer (the first may be lost) */
      if (fw->final_reason == 0) send_ack(fw, sess, seq, fw->final_chunk, fw->final_row);
      else send_nack(fw, sess, seq, fw->final_reason, fw->final_chunk, fw->final_row, fw->final_col);
    } else {
      send_ack(fw, sess, seq, 0xFFFFu, 0); /* older: a later message was applied after it */
    }
    return;
  }
  if (ahead > 0) {
    fw->faults |= WWFW_F_SEQ_ERROR;
    send_nack(fw, sess, seq, WWFW_NACK_SEQ_GAP, 0xFFFFu, 0, 0);
    return;
  }
  uint16_t keep_seq = fw->final_seq, keep_chunk = fw->final_chunk, keep_row = fw->final_row;
  uint8_t keep_reason = fw->final_reason, keep_col = fw->final_col, keep_valid = fw->final_valid;
  fw->recording = 1; /* the answer that consumes `seq` is kept for a repeat of it */
  if (type == WWFW_CHUNK_BEGIN) on_chunk_begin(fw, sess, seq, b, body);
  else if (type == WWFW_CHUNK_DATA) on_chunk_data(fw, sess, seq, b, body);
  else if (type == WWFW_BYE) { /* the owner ends its session: not a silent link, so no watchdog fault */
    /* nobody will watch what is still queued: it is dropped (fate hold) and the arm stays where it is;
     * after a stream that played out there is nothing to drop and the mode stays idle */
    if (fw->active || fw->c_read != fw->c_write || fw->open_valid) wwfw_hold(fw, WWFW_F_HOLD);
    fw->released = 1;
    fw->rx_expected++;
    logf_(fw, "bye session=%lu", (unsigned long)sess);
    send_ack(fw, sess, seq, 0xFFFFu, 0);
  } else { /* RESET: clear faults and queue, leave e-stop */
    drop_queue(fw, WWFW_FATE_RESET);
    wwfw_stop_motion(fw);
    fw->mode = WWFW_MODE_IDLE;
    fw->faults = 0;
    fw->rx_expected++;
    logf_(fw, "reset");
    send_ack(fw, sess, seq, 0xFFFFu, 0);
  }
  fw->recording = 0;
  if (fw->rx_expected != (uint16_t)(seq + 1u)) { /* not consumed (buffer full): the previous answer stays final */
    fw->final_seq = keep_seq, fw->final_chunk = keep_chunk, fw->final_row = keep_row;
    fw->final_reason = keep_reason, fw->final_col = keep_col, fw->final_valid = keep_valid;
  }
}

int wwfw_handle_message(wwfw *fw, const uint8_t *m, size_t n) {
  if (n < WWFW_HEADER + WWFW_CRC || n > WWFW_MAX_MSG) {
    fw->frame_errors++;
    return -1;
  }
  if (wwfw_crc32c(m, n - WWFW_CRC) != wwfw_rd32(m + n - WWFW_CRC)) {
    fw->crc_errors++;
    fw->faults |= WWFW_F_CRC_ERROR;
    return -1;
  }
  fw->frames_ok++;
  dispatch(fw, m[0], wwfw_rd16(m + 1), wwfw_rd32(m + 3), m + WWFW_HEADER, n - WWFW_HEADER - WWFW_CRC);
  flush_fates(fw);
  return 0;
}

void wwfw_tick(wwfw *fw, uint32_t now_ms) {
  fw->prev_tick_ms = fw->now_ms;
  fw->now_ms = now_ms;
  if (fw->connected && !fw->released) { /* armed from HELLO to BYE: a host that vanishes mid-session */
    uint32_t quiet = now_ms - fw->last_valid_ms;
    if (quiet >= fw->arm.watchdog_estop_ms && fw->mode != WWFW_MODE_ESTOP) {
      wwfw_estop(fw, WWFW_F_WATCHDOG_ESTOP);
    } else if (quiet >= fw->arm.watchdog_hold_ms && fw->mode != WWFW_MODE_HOLD && fw->mode != WWFW_MODE_ESTOP) {
      wwfw_hold(fw, WWFW_F_WATCHDOG_HOLD);
    }
  }
  wwfw_interp_tick(fw);
  if (fw->connected && !fw->released && fw->arm.feedback_rate_hz && (int32_t)(now_ms - fw->next_state_ms) >= 0) {
    send_state(fw, fw->session);
    fw->next_state_ms = now_ms + 1000u / fw->arm.feedback_rate_hz;
  }
  flush_fates(fw);
}

/* ---- accessors for ports written in other languages (the Python in-process firmware uses ctypes) ---- */
size_t wwfw_sizeof(void) { return sizeof(wwfw); }
uint8_t wwfw_get_mode(const wwfw *fw) { return fw->mode; }
uint8_t wwfw_get_cols(const wwfw *fw, float *cmd) {
  memcpy(cmd, fw->cmd, sizeof fw->cmd);
  return fw->ncols;
}
void wwfw_set_measured(wwfw *fw, const float *pos, const float *vel) {
  memcpy(fw->meas_pos, pos, sizeof fw->meas_pos);
  memcpy(fw->meas_vel, vel, sizeof fw->meas_vel);
}
void wwfw_set_log(wwfw *fw, void (*log)(void *, const char *), void *ctx) {
  fw->log = log;
  fw->log_ctx = ctx;
}
