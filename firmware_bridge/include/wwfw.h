/* wwfw: the reference arm firmware of the wallwm-edge bridge (C99, no dynamic allocation).
 *
 * Everything a microcontroller port needs lives behind this one header: CRC-32C, COBS framing, CAN
 * segmentation, the chunk queue, the interpolator, the watchdog and the message dispatcher. The
 * wire format is specified in firmware_bridge/PROTOCOL.md; this file only mirrors it.
 *
 * A port calls, from its main loop:
 *   wwfw_init(&fw, &arm, boot_id)            once at boot
 *   wwfw_serial_feed(&fw, &rx, byte)         for every received UART byte (or wwfw_can_feed per CAN frame)
 *   wwfw_tick(&fw, now_ms)                   at the control rate; then reads fw.cmd (joint commands)
 *   wwfw_outbox_pop(&fw, msg, &len)          to send replies/feedback (COBS-encode or CAN-segment them)
 */
#ifndef WWFW_H
#define WWFW_H

#include <stddef.h>
#include <stdint.h>

#define WWFW_PROTO_VERSION 2u
#define WWFW_MAX_MSG 1024u       /* bytes of one message: header + body + CRC */
#define WWFW_MAX_JOINTS 7u
#define WWFW_MAX_COLS 8u         /* joints (or 6 pose columns) + gripper */
#define WWFW_QUEUE_POINTS 512u   /* chunk queue capacity in points */
#define WWFW_MAX_CHUNKS 16u      /* complete chunks waiting to play */
#define WWFW_OUTBOX 8u           /* replies waiting to be sent */
#define WWFW_OUT_MAX 256u        /* largest firmware->host message */
#define WWFW_HEADER 7u           /* type u8 + seq u16 + session u32 */
#define WWFW_CRC 4u
#define WWFW_FATES 32u           /* chunk fates kept for the host (resent until a HEARTBEAT acknowledges them) */
#define WWFW_MIN_RATE_HZ 1.0f    /* slowest chunk point rate: one segment lasts at most one second */

/* message types (PROTOCOL.md, "Messages") */
enum {
  WWFW_HELLO = 0x01, WWFW_CHUNK_BEGIN = 0x02, WWFW_CHUNK_DATA = 0x03, WWFW_HEARTBEAT = 0x04,
  WWFW_HOLD = 0x05, WWFW_ESTOP = 0x06, WWFW_RESET = 0x07, WWFW_BYE = 0x08,
  WWFW_ARM_INFO = 0x81, WWFW_ACK = 0x82, WWFW_NACK = 0x83, WWFW_STATE = 0x84, WWFW_FATE = 0x85
};
/* chunk start modes */
enum { WWFW_START_AFTER = 0, WWFW_START_AT_TIME = 1, WWFW_START_REPLACE = 2 };
/* chunk format byte: bits 0-1 encoding, bit 2 space, bit 3 interpolation */
enum { WWFW_ENC_INT16 = 0, WWFW_ENC_F16 = 1, WWFW_ENC_F32 = 2 };
#define WWFW_FMT_EE 0x04u
#define WWFW_FMT_CUBIC 0x08u
/* NACK reasons; the first three do not consume the sequence number (the host retries the same message) */
enum {
  WWFW_NACK_SEQ_GAP = 1, WWFW_NACK_BUFFER_FULL = 2, WWFW_NACK_NOT_READY = 3,
  WWFW_NACK_BAD_CHUNK = 4, WWFW_NACK_LIMIT = 5, WWFW_NACK_ESTOPPED = 6, WWFW_NACK_BAD_MESSAGE = 7,
  WWFW_NACK_DROPPED = 8, /* the chunk this CHUNK_DATA continues was dropped (hold, e-stop, reset, newer chunk) */
  WWFW_NACK_NOT_OWNER = 9 /* another session owns the link; not consumed */
};
/* what became of a queued (or partly received) chunk: FATE entries (PROTOCOL.md, "Chunk fates") */
enum {
  WWFW_FATE_PLAYED = 1, WWFW_FATE_HOLD = 2, WWFW_FATE_ESTOP = 3, WWFW_FATE_REPLACED = 4, WWFW_FATE_RESET = 5,
  WWFW_FATE_ABANDONED = 6
};
/* command spaces */
enum { WWFW_SPACE_JOINT = 0, WWFW_SPACE_EE = 1 };
/* modes reported in STATE */
enum { WWFW_MODE_IDLE = 0, WWFW_MODE_RUNNING = 1, WWFW_MODE_HOLD = 2, WWFW_MODE_ESTOP = 3 };
/* fault flags reported in STATE */
#define WWFW_F_WATCHDOG_HOLD 0x0001u
#define WWFW_F_WATCHDOG_ESTOP 0x0002u
#define WWFW_F_ESTOP 0x0004u
#define WWFW_F_VEL_LIMITED 0x0008u
#define WWFW_F_POS_LIMITED 0x0010u
#define WWFW_F_UNDERRUN 0x0020u
#define WWFW_F_CRC_ERROR 0x0040u
#define WWFW_F_SEQ_ERROR 0x0080u
#define WWFW_F_REJECTED 0x0100u
#define WWFW_F_BOOTED 0x0200u
#define WWFW_F_HOLD 0x0400u
#define WWFW_STICKY (WWFW_F_WATCHDOG_HOLD | WWFW_F_WATCHDOG_ESTOP | WWFW_F_ESTOP | WWFW_F_BOOTED | WWFW_F_HOLD)

/* ---- checksums and framing ------------------------------------------------------------------------ */
uint32_t wwfw_crc32c(const uint8_t *p, size_t n);
uint32_t wwfw_crc32c_update(uint32_t reg, const uint8_t *p, size_t n); /* raw register, no pre/post xor */
size_t wwfw_cobs_encode(const uint8_t *in, size_t n, uint8_t *out); /* out >= n + n/254 + 1; no delimiter */
size_t wwfw_cobs_decode(const uint8_t *in, size_t n, uint8_t *out); /* 0 on malformed input */
float wwfw_half_to_float(uint16_t h);

/* ---- arm description ------------------------------------------------------------------------------- */
typedef struct { float lo, hi, vmax; } wwfw_limit;
typedef struct {
  uint8_t n_joints, has_gripper;
  uint16_t control_rate_hz, feedback_rate_hz;
  uint16_t watchdog_hold_ms, watchdog_estop_ms;
  wwfw_limit joint[WWFW_MAX_COLS]; /* n_joints joints, then the gripper */
  wwfw_limit ee[WWFW_MAX_COLS];    /* 6 pose columns (x y z rx ry rz), then the gripper */
} wwfw_arm;

typedef struct {
  uint16_t id, len, received;
  uint32_t event_id, start_ms, start; /* start: absolute point index of row 0 in the queue */
  float rate;
  uint8_t mode, fmt;
} wwfw_chunk;

typedef struct {
  uint16_t id, rows; /* rows: how many of the chunk's rows the arm reached */
  uint8_t fate;
} wwfw_fate;

typedef struct {
  uint8_t buf[WWFW_MAX_MSG + WWFW_MAX_MSG / 254 + 2];
  size_t n;
  int overflow;
} wwfw_serial_rx;

typedef struct {
  uint8_t buf[WWFW_MAX_MSG];
  size_t n, want;
  uint8_t next_seg, active;
} wwfw_can_rx;

typedef struct wwfw {
  wwfw_arm arm;
  uint8_t ncols;
  uint32_t boot_id, now_ms, last_valid_ms, next_state_ms;
  uint32_t prev_tick_ms; /* the tick before now: the watchdog's log shows it tripped at the first tick past its deadline */
  /* link */
  uint8_t connected, ctrl_valid;
  uint8_t released; /* the owner said BYE: nobody owns the link, the watchdog is disarmed until the next HELLO */
  uint32_t session, owner_last_ms; /* owner_last_ms: the owning session's last valid frame */
  uint16_t rx_expected, ctrl_last, tx_seq;
  uint32_t foreign_frames; /* valid frames from another session (refused) */
  /* the final answer (ACK, or the NACK reason) to the last applied reliable message: a repeat of that
   * message gets it again, so a lost answer never turns into a bare duplicate ACK */
  uint16_t final_seq, final_chunk, final_row;
  uint8_t final_reason, final_col, final_valid, recording;
  /* chunk queue: points[q_read .. q_write) are complete and unplayed; the open chunk is staged after q_write */
  float points[WWFW_QUEUE_POINTS][WWFW_MAX_COLS];
  uint32_t q_read, q_write;
  wwfw_chunk chunks[WWFW_MAX_CHUNKS];
  uint32_t c_read, c_write;
  wwfw_chunk open;
  uint8_t open_valid;
  uint16_t rejected_id, dropped_id; /* dropped: the last partial chunk dropped (CHUNK_DATA for it: NACK 8) */
  uint8_t rejected_valid, dropped_valid;
  /* chunk fates: a ring the host reads through FATE messages and acknowledges in HEARTBEAT */
  wwfw_fate fates[WWFW_FATES];
  uint16_t fate_next, fate_sent, fate_acked;
  /* interpolator */
  uint8_t active;
  wwfw_chunk cur;
  uint16_t idx; /* row of cur the arm is heading to (p1) */
  float p_prev[WWFW_MAX_COLS], p0[WWFW_MAX_COLS], p1[WWFW_MAX_COLS];
  float s, ds;
  uint16_t last_done;
  /* outputs */
  uint8_t mode;
  uint16_t faults;
  uint8_t space;                  /* space of cmd: WWFW_SPACE_JOINT or WWFW_SPACE_EE */
  float cmd[WWFW_MAX_COLS];       /* commanded position of every column of that space (joints/pose, gripper) */
  float cmd_other[WWFW_MAX_COLS]; /* the other space's last command (its gripper column is stale: cmd has it) */
  float meas_pos[WWFW_MAX_COLS], meas_vel[WWFW_MAX_COLS]; /* set by the port (or the simulator), in `space` */
  float meas_other[WWFW_MAX_COLS];                        /* swapped with meas_pos on a space switch */
  /* counters */
  uint32_t crc_errors, frame_errors, frames_ok, points_played;
  /* outbox */
  uint8_t out[WWFW_OUTBOX][WWFW_OUT_MAX];
  uint16_t out_len[WWFW_OUTBOX];
  uint32_t out_read, out_write, out_dropped;
  /* optional event log (simulator, tests): called with one line of text per chunk event */
  void (*log)(void *ctx, const char *line);
  void *log_ctx;
} wwfw;

void wwfw_default_arm(wwfw_arm *arm, uint8_t n_joints);
void wwfw_init(wwfw *fw, const wwfw_arm *arm, uint32_t boot_id);
/* one complete message (header + body + CRC); returns 0 if accepted, <0 on CRC/format error */
int wwfw_handle_message(wwfw *fw, const uint8_t *msg, size_t n);
void wwfw_tick(wwfw *fw, uint32_t now_ms);
void wwfw_hold(wwfw *fw, uint16_t why_flags);
void wwfw_estop(wwfw *fw, uint16_t why_flags);
const wwfw_limit *wwfw_limits(const wwfw *fw, uint8_t fmt);
uint8_t wwfw_cols(const wwfw *fw, uint8_t space); /* columns of a space: (n_joints or 6) + gripper */
uint16_t wwfw_free_chunks(const wwfw *fw);        /* chunk slots the queue can still take */
int wwfw_outbox_pop(wwfw *fw, uint8_t *msg, size_t *n);
uint32_t wwfw_points_crc(const wwfw *fw, const wwfw_chunk *c); /* CRC-32C of a queued chunk's float32 points */

/* accessors for ports in other languages (ctypes) */
size_t wwfw_sizeof(void);
uint8_t wwfw_get_mode(const wwfw *fw);
uint8_t wwfw_get_cols(const wwfw *fw, float *cmd);
void wwfw_set_measured(wwfw *fw, const float *pos, const float *vel);
void wwfw_set_log(wwfw *fw, void (*log)(void *, const char *), void *ctx);

/* serial: feed bytes; decoded messages go to wwfw_handle_message */
void wwfw_serial_feed(wwfw *fw, wwfw_serial_rx *rx, const uint8_t *bytes, size_t n);
/* 0x00, COBS, 0x00: the leading delimiter ends whatever garbage came before; out >= n + n/254 + 3 */
size_t wwfw_serial_frame(const uint8_t *msg, size_t n, uint8_t *out);

/* CAN: own segmentation, segment index in the identifier (PROTOCOL.md, "CAN") */
void wwfw_can_rx_reset(wwfw_can_rx *rx);
/* feeds one CAN frame whose identifier is in [base, base+64); returns 1 and sets *msg_len when a message completed */
int wwfw_can_rx_frame(wwfw_can_rx *rx, uint32_t id_offset, const uint8_t *data, size_t len, size_t *msg_len);
/* number of frames for a message and the i-th frame of it; frame_bytes is 8 (classic) or 64 (CAN-FD) */
size_t wwfw_can_frame_count(size_t msg_len, size_t frame_bytes);
size_t wwfw_can_segment(const uint8_t *msg, size_t msg_len, size_t frame_bytes, size_t i, uint32_t *id_offset,
                        uint8_t *data);
void wwfw_can_feed(wwfw *fw, wwfw_can_rx *rx, uint32_t id_offset, const uint8_t *data, size_t len);

/* little-endian helpers shared by the library, the simulator and the tests */
static inline uint16_t wwfw_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t wwfw_rd32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline void wwfw_wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void wwfw_wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

#endif
