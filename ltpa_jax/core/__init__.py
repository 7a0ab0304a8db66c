"""The training maths, pure: optimiser and schedule, the step plan, device layouts, the jitted
steps and their memory."""
