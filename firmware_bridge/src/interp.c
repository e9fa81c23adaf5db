/* The interpolator: plays queued chunk points at the control rate.
 *
 * A chunk of L points at `rate` Hz is a path the arm follows from where it is now: the first segment
 * runs from the current command to row 0, then row i to row i+1, each segment 1/rate seconds long.
 * Linear or cubic (Catmull-Rom: passes through every point, continuous velocity). Whatever the
 * interpolation asks for, the command moves at most vmax/control_rate per tick per column: a chunk
 * that asks for more is slowed down (flag VEL_LIMITED), never executed faster than the arm allows.
 *
 * Spaces: the command lives in one space at a time (joints or end-effector pose, then the gripper). The
 * reference firmware has no kinematics, so it keeps the other space's last command in cmd_other and a
 * chunk in the other space starts from there (a port with kinematics would set cmd_other from the
 * forward/inverse kinematics of the measured pose). The gripper is one actuator: its command carries over.
 * Either way the switch itself moves nothing: every column of either space moves at most vmax per tick. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "wwfw.h"

static const float *row_at(const wwfw *fw, const wwfw_chunk *ch, uint16_t i) {
  return fw->points[(ch->start + i) % WWFW_QUEUE_POINTS];
}

static void say(wwfw *fw, const char *what, uint16_t id) {
  char line[64];
  if (!fw->log) return;
  snprintf(line, sizeof line, "%s chunk=%u", what, id);
  fw->log(fw->log_ctx, line);
}

void wwfw_fate_record(wwfw *fw, uint16_t id, uint8_t fate, uint16_t rows); /* fw.c */

/* make `space` the command space: swap in its last command (and measured vector), carry the gripper */
static void switch_space(wwfw *fw, uint8_t space) {
  float cmd[WWFW_MAX_COLS], meas[WWFW_MAX_COLS];
  uint8_t g_old = (uint8_t)(fw->ncols - 1u), g_new = (uint8_t)(wwfw_cols(fw, space) - 1u);
  if (space == fw->space) return;
  memcpy(cmd, fw->cmd, sizeof cmd);
  memcpy(meas, fw->meas_pos, sizeof meas);
  memcpy(fw->cmd, fw->cmd_other, sizeof cmd);
  memcpy(fw->meas_pos, fw->meas_other, sizeof meas);
  if (fw->arm.has_gripper) fw->cmd[g_new] = cmd[g_old], fw->meas_pos[g_new] = meas[g_old];
  memcpy(fw->cmd_other, cmd, sizeof cmd);
  memcpy(fw->meas_other, meas, sizeof meas);
  memset(fw->meas_vel, 0, sizeof fw->meas_vel);
  fw->space = space;
  fw->ncols = wwfw_cols(fw, space);
  memcpy(fw->p_prev, fw->cmd, sizeof fw->cmd);
  memcpy(fw->p0, fw->cmd, sizeof fw->cmd);
  memcpy(fw->p1, fw->cmd, sizeof fw->cmd);
  fw->s = 0.0f;
}

void wwfw_stop_motion(wwfw *fw) {
  if (fw->active) say(fw, "stopped", fw->cur.id);
  fw->active = 0;
  memcpy(fw->p0, fw->cmd, sizeof fw->cmd);
  memcpy(fw->p1, fw->cmd, sizeof fw->cmd);
}

/* start chunk `ch` (already popped from the queue) from the current command */
static void begin(wwfw *fw, const wwfw_chunk *ch, int from_cmd) {
  uint8_t c, space = (ch->fmt & WWFW_FMT_EE) ? WWFW_SPACE_EE : WWFW_SPACE_JOINT;
  if (space != fw->space) { /* the previous path's points mean nothing here: start from this space's command */
    switch_space(fw, space);
    from_cmd = 1;
  }
  fw->cur = *ch;
  fw->active = 1;
  fw->idx = 0;
  if (from_cmd) {
    memcpy(fw->p_prev, fw->cmd, sizeof fw->cmd);
    memcpy(fw->p0, fw->cmd, sizeof fw->cmd);
    fw->s = 0.0f;
  }
  for (c = 0; c < WWFW_MAX_COLS; c++) fw->p1[c] = row_at(fw, ch, 0)[c];
  fw->q_read = ch->start + 1;
  fw->ds = ch->rate / (float)fw->arm.control_rate_hz;
  if (fw->mode != WWFW_MODE_RUNNING) fw->faults &= (uint16_t)~(WWFW_F_WATCHDOG_HOLD | WWFW_F_HOLD);
  fw->mode = WWFW_MODE_RUNNING;
  say(fw, "start", ch->id);
}

/* pop the next chunk if it may start now: an at-time chunk whose time has come preempts everything */
static int next_chunk(wwfw *fw, int *from_cmd) {
  uint32_t k;
  for (k = fw->c_read; k != fw->c_write; k++) {
    wwfw_chunk *ch = &fw->chunks[k % WWFW_MAX_CHUNKS];
    if (ch->mode == WWFW_START_AT_TIME && (int32_t)(fw->now_ms - ch->start_ms) >= 0) {
      wwfw_chunk go = *ch;
      for (; fw->c_read != k; fw->c_read++) {
        say(fw, "dropped", fw->chunks[fw->c_read % WWFW_MAX_CHUNKS].id);
        wwfw_fate_record(fw, fw->chunks[fw->c_read % WWFW_MAX_CHUNKS].id, WWFW_FATE_REPLACED, 0);
      }
      fw->c_read++;
      if (fw->active) {
        say(fw, "preempted", fw->cur.id);
        wwfw_fate_record(fw, fw->cur.id, WWFW_FATE_REPLACED, fw->idx);
      }
      begin(fw, &go, 1);
      *from_cmd = 1;
      return 1;
    }
  }
  if (fw->c_read == fw->c_write) return 0;
  {
    wwfw_chunk *head = &fw->chunks[fw->c_read % WWFW_MAX_CHUNKS];
    if (head->mode == WWFW_START_AT_TIME) return 0; /* waits for its time */
    fw->c_read++;
    begin(fw, head, !fw->active);
    return 1;
  }
}

void wwfw_interp_tick(wwfw *fw) {
  const wwfw_limit *lim;
  float target[WWFW_MAX_COLS], dt;
  uint8_t c, cols;
  int from_cmd = 0;
  if (fw->mode == WWFW_MODE_HOLD || fw->mode == WWFW_MODE_ESTOP) {
    if (fw->c_read == fw->c_write) return; /* holding: nothing new to play */
  }
  if (fw->mode == WWFW_MODE_ESTOP) return;
  if (!fw->active || (fw->c_read != fw->c_write)) {
    /* an at-time chunk may preempt; otherwise only start when idle */
    uint32_t k;
    int due = 0;
    for (k = fw->c_read; k != fw->c_write; k++) {
      const wwfw_chunk *ch = &fw->chunks[k % WWFW_MAX_CHUNKS];
      if (ch->mode == WWFW_START_AT_TIME && (int32_t)(fw->now_ms - ch->start_ms) >= 0) due = 1;
    }
    if (!fw->active || due) next_chunk(fw, &from_cmd);
  }
  if (!fw->active) { /* idle: keep converging on the last point (a velocity-limited command may lag) */
    memcpy(target, fw->p1, sizeof target);
    goto limit;
  }

  fw->s += fw->ds;
  while (fw->s >= 1.0f) { /* reached p1: move on to the next row, or the next chunk */
    fw->s -= 1.0f;
    memcpy(fw->p_prev, fw->p0, sizeof fw->p0);
    memcpy(fw->p0, fw->p1, sizeof fw->p1);
    fw->points_played++;
    if (fw->idx + 1u < fw->cur.len) {
      fw->idx++;
      memcpy(fw->p1, row_at(fw, &fw->cur, fw->idx), sizeof fw->p1);
      fw->q_read = fw->cur.start + fw->idx + 1u;
      continue;
    }
    say(fw, "done", fw->cur.id);
    wwfw_fate_record(fw, fw->cur.id, WWFW_FATE_PLAYED, fw->cur.len);
    fw->last_done = fw->cur.id;
    fw->active = 0;
    if (fw->c_read != fw->c_write && fw->chunks[fw->c_read % WWFW_MAX_CHUNKS].mode == WWFW_START_AFTER) {
      wwfw_chunk nx = fw->chunks[fw->c_read % WWFW_MAX_CHUNKS];
      fw->c_read++;
      begin(fw, &nx, 0); /* seamless: continue from the last point, keep the phase */
      continue;
    }
    if (fw->c_read == fw->c_write) fw->faults |= WWFW_F_UNDERRUN; /* the queue ran dry: the arm stops here */
    fw->s = 0.0f;
    memcpy(fw->p1, fw->p0, sizeof fw->p0);
    fw->mode = WWFW_MODE_IDLE;
    break;
  }

  if (fw->cur.fmt & WWFW_FMT_CUBIC) {
    /* Catmull-Rom through p0 -> p1 with neighbours p_prev and p2 */
    const float *p2 = fw->active && fw->idx + 1u < fw->cur.len ? row_at(fw, &fw->cur, (uint16_t)(fw->idx + 1u)) : fw->p1;
    float t = fw->s, t2 = t * t, t3 = t2 * t;
    for (c = 0; c < fw->ncols; c++) {
      float a = fw->p_prev[c], b = fw->p0[c], d = fw->p1[c], e = p2[c];
      target[c] = 0.5f * (2.0f * b + (-a + d) * t + (2.0f * a - 5.0f * b + 4.0f * d - e) * t2 +
                          (-a + 3.0f * b - 3.0f * d + e) * t3);
    }
  } else {
    for (c = 0; c < fw->ncols; c++) target[c] = fw->p0[c] + fw->s * (fw->p1[c] - fw->p0[c]);
  }
limit:
  /* the target is clamped to the limits first (cubic overshoot between two in-range points may leave
   * them), then the step to it to vmax: the command stays inside the limits and never moves faster */
  lim = wwfw_limits(fw, fw->space == WWFW_SPACE_EE ? WWFW_FMT_EE : 0u);
  cols = fw->ncols;
  dt = 1.0f / (float)fw->arm.control_rate_hz;
  for (c = 0; c < cols; c++) {
    float t = target[c], step, vmax = lim[c].vmax * dt;
    if (t != t) t = fw->cmd[c]; /* never: rows are checked finite; a port's bad limits must not spread NaN */
    if (t < lim[c].lo) t = lim[c].lo, fw->faults |= WWFW_F_POS_LIMITED;
    if (t > lim[c].hi) t = lim[c].hi, fw->faults |= WWFW_F_POS_LIMITED;
    step = t - fw->cmd[c];
    if (step > vmax) step = vmax, fw->faults |= WWFW_F_VEL_LIMITED;
    if (step < -vmax) step = -vmax, fw->faults |= WWFW_F_VEL_LIMITED;
    fw->cmd[c] += step;
    if (fw->cmd[c] < lim[c].lo) fw->cmd[c] = lim[c].lo; /* rounding only: cmd and t are both inside */
    if (fw->cmd[c] > lim[c].hi) fw->cmd[c] = lim[c].hi;
  }
}
