"""The base of the errors a user can fix: the commands print their message alone (`cli`)."""

import errno

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # OSError errnos of a full disk (or quota)


class UserError(Exception):
  """A mistake in what a command was given (config, workdir, checkpoint, data); the message
  names the problem and the fix."""
