"""What the replicas of one fleet share through Redis (state.redis)."""
