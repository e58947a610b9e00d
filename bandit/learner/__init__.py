"""The learner daemon: join decisions with rewards, learn, checkpoint exactly once."""
