/*
 * om-bench-rusage: runs a command and reports its wall time and the CPU of
 * its whole process tree, in microseconds.
 *
 *   om-bench-rusage OUTFILE COMMAND [ARG...]
 *
 * OUTFILE gets one line "WALL_S USER_S SYS_S" (seconds, 6 decimals): wall
 * from just before fork to the command's exit, CPU from wait4(2), which
 * counts the command and every descendant it (or they) waited for: each
 * ssh a fan-out tool starts.  /usr/bin/time says the same in hundredths,
 * too coarse for 10 hosts.  Exits with the command's status (128 + signal).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int
main(int argc, char **argv)
{
	struct timespec t0, t1;
	struct rusage ru;
	int status;
	pid_t pid;
	FILE *f;

	if (argc < 3) {
		fputs("usage: om-bench-rusage OUTFILE COMMAND [ARG...]\n", stderr);
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((pid = fork()) < 0) {
		perror("om-bench-rusage: fork");
		return 2;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		perror("om-bench-rusage: exec");
		_exit(127);
	}
	while (wait4(pid, &status, 0, &ru) < 0)
		if (errno != EINTR) {
			perror("om-bench-rusage: wait4");
			return 2;
		}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if ((f = fopen(argv[1], "w")) == NULL) {
		perror("om-bench-rusage: output file");
		return 2;
	}
	fprintf(f, "%.6f %.6f %.6f\n",
	        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	        tv_s(ru.ru_utime), tv_s(ru.ru_stime));
	fclose(f);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
