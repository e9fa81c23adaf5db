/* wallwm-fw-sim: the reference firmware on a host, speaking the protocol over a pty, a serial device or
 * SocketCAN, driving a simulated arm (first-order joint dynamics with velocity and position limits).
 *
 *   wallwm-fw-sim --pty                 create a pseudo-terminal, print "PTY /dev/pts/N", serve it
 *   wallwm-fw-sim --device /dev/ttyUSB0 serve an existing tty (raw, 8N1; baud is the adapter's)
 *   wallwm-fw-sim --can vcan0 [--fd]    SocketCAN (Linux), identifiers per PROTOCOL.md
 * SIGUSR1 reboots the firmware (new boot id, queue lost, arm where it is): the "reset mid-chunk" fault.
 * SIGTERM/SIGINT exit cleanly. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/can.h>
#include <linux/can/raw.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#define HAVE_SOCKETCAN 1
#endif

#include "wwfw.h"

static volatile sig_atomic_t g_stop = 0, g_reboot = 0;
static void on_stop(int s) { (void)s; g_stop = 1; }
static void on_usr1(int s) { (void)s; g_reboot = 1; }

static FILE *g_log = NULL;
static uint32_t g_t0_ms;
static uint32_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u) - g_t0_ms;
}
static void log_line(void *ctx, const char *line) {
  (void)ctx;
  if (g_log) {
    fprintf(g_log, "%lu %s\n", (unsigned long)now_ms(), line);
    fflush(g_log);
  }
}

typedef struct {
  int fd, is_can, canfd;
  uint32_t rx_base, tx_base;
  wwfw_serial_rx srx;
  wwfw_can_rx crx;
  unsigned long tx_dropped;
} link_t;

static void write_all(link_t *l, const uint8_t *p, size_t n) {
  int tries = 0;
  while (n > 0) {
    ssize_t w = write(l->fd, p, n);
    if (w > 0) {
      p += w, n -= (size_t)w;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EINTR) && tries++ < 20) {
      struct pollfd pf = {l->fd, POLLOUT, 0};
      poll(&pf, 1, 2);
      continue;
    }
    l->tx_dropped++; /* nobody reading (host disconnected): drop, the host re-syncs on COBS */
    return;
  }
}

#ifdef HAVE_SOCKETCAN
static const uint8_t fd_lengths[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64};
static void can_send(link_t *l, const uint8_t *msg, size_t n) {
  size_t fb = l->canfd ? 64 : 8, count = wwfw_can_frame_count(n, fb), i;
  for (i = 0; i < count; i++) {
    struct canfd_frame f;
    uint32_t off;
    size_t len, k;
    memset(&f, 0, sizeof f);
    len = wwfw_can_segment(msg, n, fb, i, &off, f.data);
    f.can_id = l->tx_base + off;
    if (l->canfd) {
      for (k = 0; fd_lengths[k] < len; k++) {
      }
      f.len = fd_lengths[k]; /* padding bytes are zero; the length prefix says where the message ends */
      write_all(l, (const uint8_t *)&f, CANFD_MTU);
    } else {
      f.len = (uint8_t)len;
      write_all(l, (const uint8_t *)&f, CAN_MTU);
    }
  }
}
static int open_can(link_t *l, const char *ifname) {
  struct sockaddr_can addr;
  struct ifreq ifr;
  struct can_filter filt;
  int on = 1;
  l->fd = socket(PF_CAN, SOCK_RAW, CAN_RAW);
  if (l->fd < 0) return -1;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
  if (ioctl(l->fd, SIOCGIFINDEX, &ifr) < 0) return -1;
  if (l->canfd && setsockopt(l->fd, SOL_CAN_RAW, CAN_RAW_FD_FRAMES, &on, sizeof on) < 0) return -1;
  filt.can_id = l->rx_base;
  filt.can_mask = CAN_SFF_MASK & ~0x3Fu; /* our 64-identifier block */
  setsockopt(l->fd, SOL_CAN_RAW, CAN_RAW_FILTER, &filt, sizeof filt);
  memset(&addr, 0, sizeof addr);
  addr.can_family = AF_CAN;
  addr.can_ifindex = ifr.ifr_ifindex;
  if (bind(l->fd, (struct sockaddr *)&addr, sizeof addr) < 0) return -1;
  fcntl(l->fd, F_SETFL, fcntl(l->fd, F_GETFL) | O_NONBLOCK);
  l->is_can = 1;
  return 0;
}
#endif

static void send_msg(link_t *l, const uint8_t *msg, size_t n) {
  uint8_t out[WWFW_MAX_MSG + WWFW_MAX_MSG / 254 + 4];
#ifdef HAVE_SOCKETCAN
  if (l->is_can) {
    can_send(l, msg, n);
    return;
  }
#endif
  write_all(l, out, wwfw_serial_frame(msg, n, out));
}

static void receive(wwfw *fw, link_t *l) {
  uint8_t buf[4096];
  for (;;) {
#ifdef HAVE_SOCKETCAN
    if (l->is_can) {
      struct canfd_frame f;
      ssize_t r = read(l->fd, &f, sizeof f);
      if (r <= 0) return;
      if ((f.can_id & CAN_EFF_FLAG) || (f.can_id & CAN_SFF_MASK) - l->rx_base >= 64u) continue;
      wwfw_can_feed(fw, &l->crx, (f.can_id & CAN_SFF_MASK) - l->rx_base, f.data, f.len);
      continue;
    }
#endif
    {
      ssize_t r = read(l->fd, buf, sizeof buf);
      if (r <= 0) return; /* EAGAIN, or EIO while no host has the pty open */
      wwfw_serial_feed(fw, &l->srx, buf, (size_t)r);
    }
  }
}

/* first-order joint dynamics: each column tracks the command with time constant tau, within limits */
static void plant_step(wwfw *fw, float dt, float tau) {
  const wwfw_limit *lim = wwfw_limits(fw, fw->space == WWFW_SPACE_EE ? WWFW_FMT_EE : 0u);
  uint8_t c;
  for (c = 0; c < fw->ncols; c++) {
    float v = (fw->cmd[c] - fw->meas_pos[c]) / tau;
    if (v > lim[c].vmax) v = lim[c].vmax;
    if (v < -lim[c].vmax) v = -lim[c].vmax;
    if (fw->mode == WWFW_MODE_ESTOP) v = 0.0f; /* brakes on */
    fw->meas_pos[c] += v * dt;
    if (fw->meas_pos[c] < lim[c].lo) fw->meas_pos[c] = lim[c].lo, v = 0.0f;
    if (fw->meas_pos[c] > lim[c].hi) fw->meas_pos[c] = lim[c].hi, v = 0.0f;
    fw->meas_vel[c] = v;
  }
}

static void usage(void) {
  fprintf(stderr,
          "usage: wallwm-fw-sim (--pty | --device PATH | --can IFACE [--fd]) [options]\n"
          "  --joints N            joints of the simulated arm, plus a gripper (default 6)\n"
          "  --control-rate HZ     interpolator rate (default 500)\n"
          "  --feedback-rate HZ    STATE messages per second (default 50)\n"
          "  --hold-ms MS          watchdog: hold after MS without a valid frame (default 250)\n"
          "  --estop-ms MS         watchdog: e-stop after MS without a valid frame (default 1000)\n"
          "  --can-rx-base ID      identifier block the firmware listens on (default 0x100)\n"
          "  --can-tx-base ID      identifier block the firmware sends on (default 0x140)\n"
          "  --log PATH            append chunk events (queued/start/done/hold/estop...) to PATH, '-' = stderr\n"
          "  --boot-id N           first boot id (default: from the clock)\n"
          "  --tau S               joint time constant of the simulated arm (default 0.02)\n"
          "  --exit-with-parent    exit when the process that started us exits (test harnesses)\n");
}

int main(int argc, char **argv) {
  static wwfw fw; /* ~20 KiB: keep it off the stack, as a microcontroller would */
  wwfw_arm arm;
  link_t l;
  const char *device = NULL, *can_if = NULL, *log_path = NULL;
  int use_pty = 0, exit_with_parent = 0, joints = 6, control = 500, feedback = 50, hold = 250, estop = 1000, i, slave_keep = -1;
  unsigned long boot_id = 0;
  float tau = 0.02f;
  pid_t parent = getppid();
  uint32_t next_tick, period_us;
  memset(&l, 0, sizeof l);
  l.rx_base = 0x100;
  l.tx_base = 0x140;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
    if (strcmp(a, "--pty") == 0) use_pty = 1;
    else if (strcmp(a, "--exit-with-parent") == 0) exit_with_parent = 1;
    else if (strcmp(a, "--fd") == 0) l.canfd = 1;
    else if (OPT("--device")) device = v;
    else if (OPT("--can")) can_if = v;
    else if (OPT("--joints")) joints = atoi(v);
    else if (OPT("--control-rate")) control = atoi(v);
    else if (OPT("--feedback-rate")) feedback = atoi(v);
    else if (OPT("--hold-ms")) hold = atoi(v);
    else if (OPT("--estop-ms")) estop = atoi(v);
    else if (OPT("--can-rx-base")) l.rx_base = (uint32_t)strtoul(v, NULL, 0);
    else if (OPT("--can-tx-base")) l.tx_base = (uint32_t)strtoul(v, NULL, 0);
    else if (OPT("--log")) log_path = v;
    else if (OPT("--boot-id")) boot_id = strtoul(v, NULL, 0);
    else if (OPT("--tau")) tau = (float)atof(v);
    else {
      usage();
      return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 ? 0 : 2;
    }
#undef OPT
  }
  if (use_pty + (device != NULL) + (can_if != NULL) != 1 || joints < 1 || joints > (int)WWFW_MAX_JOINTS ||
      control < 10 || control > 10000 || feedback < 0 || hold < 1 || estop <= hold || tau <= 0.0f) {
    usage();
    return 2;
  }
  g_t0_ms = 0;
  g_t0_ms = now_ms();
  if (log_path) g_log = strcmp(log_path, "-") == 0 ? stderr : fopen(log_path, "a");
  if (!boot_id) boot_id = (unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16);

  if (use_pty) {
    struct termios t;
    l.fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (l.fd < 0 || grantpt(l.fd) || unlockpt(l.fd)) {
      perror("wallwm-fw-sim: pty");
      return 1;
    }
    /* keep our own handle on the slave: the line survives the host closing and reopening it */
    slave_keep = open(ptsname(l.fd), O_RDWR | O_NOCTTY);
    if (slave_keep >= 0 && tcgetattr(slave_keep, &t) == 0) {
      cfmakeraw(&t);
      tcsetattr(slave_keep, TCSANOW, &t);
    }
    printf("PTY %s\n", ptsname(l.fd));
    fflush(stdout);
  } else if (device) {
    struct termios t;
    l.fd = open(device, O_RDWR | O_NOCTTY);
    if (l.fd < 0) {
      perror(device);
      return 1;
    }
    if (tcgetattr(l.fd, &t) == 0) {
      cfmakeraw(&t);
      tcsetattr(l.fd, TCSANOW, &t);
    }
  } else {
#ifdef HAVE_SOCKETCAN
    if (open_can(&l, can_if) < 0) {
      perror("wallwm-fw-sim: SocketCAN");
      return 1;
    }
    printf("CAN %s%s rx=0x%03lx tx=0x%03lx\n", can_if, l.canfd ? " fd" : "", (unsigned long)l.rx_base,
           (unsigned long)l.tx_base);
    fflush(stdout);
#else
    fprintf(stderr, "wallwm-fw-sim: SocketCAN needs Linux\n");
    return 1;
#endif
  }
  fcntl(l.fd, F_SETFL, fcntl(l.fd, F_GETFL) | O_NONBLOCK);
  signal(SIGTERM, on_stop);
  signal(SIGINT, on_stop);
  signal(SIGUSR1, on_usr1);
  signal(SIGPIPE, SIG_IGN);
  /* the remedy for a latched e-stop, where the user is looking (the host's error names it too) */
  fprintf(stderr, "wallwm-fw-sim: pid %ld; kill -USR1 %ld reboots the firmware (clears an e-stop), Ctrl-C stops it\n",
          (long)getpid(), (long)getpid());

  wwfw_default_arm(&arm, (uint8_t)joints);
  arm.control_rate_hz = (uint16_t)control;
  arm.feedback_rate_hz = (uint16_t)feedback;
  arm.watchdog_hold_ms = (uint16_t)hold;
  arm.watchdog_estop_ms = (uint16_t)estop;
  fw.log = log_line;
  wwfw_init(&fw, &arm, (uint32_t)boot_id);
  period_us = 1000000u / (uint32_t)control;
  next_tick = 0;
  {
    struct timespec ts;
    uint64_t t_us, next_us;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    next_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    (void)next_tick;
    while (!g_stop) {
      struct pollfd pf = {l.fd, POLLIN, 0};
      uint8_t msg[WWFW_OUT_MAX];
      size_t n;
      int wait_ms;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      t_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
      wait_ms = next_us > t_us ? (int)((next_us - t_us + 999u) / 1000u) : 0;
      if (poll(&pf, 1, wait_ms) > 0) receive(&fw, &l);
      if (exit_with_parent && getppid() != parent) break; /* orphaned: nobody will stop us */
      if (g_reboot) {
        float pos[WWFW_MAX_COLS], other[WWFW_MAX_COLS], cmd_other[WWFW_MAX_COLS];
        uint8_t space = fw.space, ncols = fw.ncols;
        g_reboot = 0;
        memcpy(pos, fw.meas_pos, sizeof pos);
        memcpy(other, fw.meas_other, sizeof other);
        memcpy(cmd_other, fw.cmd_other, sizeof cmd_other);
        boot_id++;
        wwfw_init(&fw, &arm, (uint32_t)boot_id);
        /* the arm is where it was (in both spaces); the firmware forgot everything else */
        fw.space = space, fw.ncols = ncols;
        memcpy(fw.meas_pos, pos, sizeof pos);
        memcpy(fw.meas_other, other, sizeof other);
        memcpy(fw.cmd_other, cmd_other, sizeof cmd_other);
        memcpy(fw.cmd, pos, sizeof pos);
        memcpy(fw.p_prev, pos, sizeof pos);
        memcpy(fw.p0, pos, sizeof pos);
        memcpy(fw.p1, pos, sizeof pos);
        memset(&l.srx, 0, sizeof l.srx); /* a half-received frame is lost with the reboot */
        wwfw_can_rx_reset(&l.crx);
      }
      clock_gettime(CLOCK_MONOTONIC, &ts);
      t_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
      if (t_us > next_us + 200000u) next_us = t_us; /* stalled (loaded machine): do not replay 200 ms of ticks */
      while (t_us >= next_us) {
        wwfw_tick(&fw, now_ms());
        plant_step(&fw, (float)period_us * 1e-6f, tau);
        next_us += period_us;
      }
      while (wwfw_outbox_pop(&fw, msg, &n)) send_msg(&l, msg, n);
    }
  }
  if (slave_keep >= 0) close(slave_keep);
  close(l.fd);
  if (g_log && g_log != stderr) fclose(g_log);
  return 0;
}
