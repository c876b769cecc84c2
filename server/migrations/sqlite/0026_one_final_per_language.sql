-- One final version (终稿, origin 'final') per contract, period and language: two makers racing
-- (a sign-off through one replica, the schedule on the leader, a paused ex-leader) cannot both
-- archive, and so mail, a final.
CREATE UNIQUE INDEX reports_one_final ON reports (contract_id, period, lang) WHERE origin = 'final';
