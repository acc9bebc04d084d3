-- Reserved for the immutable-tag rules of issue 16 (branch s9-imm, its 0010). This placeholder only
-- keeps the migrations numbered 1..N on the retention branch; the merge replaces it with that file.
SELECT 1;
