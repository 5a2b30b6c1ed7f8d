/* The two file calls of a durable write, retried as they must be, without the GIL and without
 * Python: shared by mta_logging/_accel.c (create_synced, fsync_directory) and
 * mta_logging/relay/_spoolwriter.c (the spool writer's threads). */

#ifndef MTA_LOGGING_DURABLE_H
#define MTA_LOGGING_DURABLE_H

#include <errno.h>
#include <sys/types.h>
#include <unistd.h>

/* Write all of data to fd (short writes and EINTR retried); 0, or -1 with errno set. */
static inline int
write_fully(int fd, const char *data, Py_ssize_t size)
{
    while (size > 0) {
        ssize_t written = write(fd, data, (size_t)size);
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += written;
        size -= written;
    }
    return 0;
}

/* fsync(fd), tried again after EINTR; 0, or -1 with errno set. */
static inline int
fsync_retried(int fd)
{
    int result;
    do {
        result = fsync(fd);
    } while (result < 0 && errno == EINTR);
    return result;
}

#endif
