-- Golden SQL: dialect 'trino' (armor_ab.stats.dialects.Trino); sqlglot reads it as 'trino'.
-- Flags: segments ['device', 'plan'], dedup=True, event_cap=True, caps={'views': 'absolute', 'dwell': 'percentile', 'inq': 'percentile', 'inqv': None}, variants=True, bot_user_agents=True, rate_limit=True, conversion_window=True, exposures=server.
-- Regenerate: python -m tests.test_warehouse_sql --write
-- UNTESTED against a live trino engine: rendered and parsed by sqlglot only (docs/scale.md).

WITH src AS (
    SELECT user_id, variant, type, value, (CAST(to_unixtime(date_trunc('second', ts)) AS BIGINT) * 1000000 + CAST(round((to_unixtime(ts) - to_unixtime(date_trunc('second', ts))) * 1e6) AS BIGINT)) AS tu, properties, source FROM (
        SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY event_id) AS rn_dedup
        FROM events WHERE experiment = CAST(? AS VARCHAR) AND (CAST(to_unixtime(date_trunc('second', ts)) AS BIGINT) * 1000000 + CAST(round((to_unixtime(ts) - to_unixtime(date_trunc('second', ts))) * 1e6) AS BIGINT)) BETWEEN CAST(? AS BIGINT) AND CAST(? AS BIGINT)
    ) dd WHERE rn_dedup = 1
),
cap AS (
    SELECT element_at(q_arr0, CAST(floor((CAST(? AS DOUBLE)) * (cardinality(q_arr0) - 1)) AS BIGINT) + 1) + ((CAST(? AS DOUBLE)) * (cardinality(q_arr0) - 1) - floor((CAST(? AS DOUBLE)) * (cardinality(q_arr0) - 1))) * (element_at(q_arr0, CAST(least(floor((CAST(? AS DOUBLE)) * (cardinality(q_arr0) - 1)) + 1, cardinality(q_arr0) - 1) AS BIGINT) + 1) - element_at(q_arr0, CAST(floor((CAST(? AS DOUBLE)) * (cardinality(q_arr0) - 1)) AS BIGINT) + 1)) AS c FROM (SELECT array_sort(array_agg(value) FILTER (WHERE value IS NOT NULL)) AS q_arr0 FROM src WHERE type = 'dwell' AND value IS NOT NULL AND tu >= CAST(? AS BIGINT)) q_sorted
),
fe0 AS (
    SELECT *, CASE WHEN NOT vouched THEN 'client' WHEN multi THEN 'multi' WHEN NOT contains(CAST(? AS ARRAY(VARCHAR)), variant) THEN 'unknown' WHEN ua_bot THEN 'user_agent' WHEN paused THEN 'paused' END AS excluded
    FROM (
        SELECT user_id, min(tu) FILTER (WHERE variant IS NOT NULL) AS t0,
            min_by(variant, tu) FILTER (WHERE (variant IS NOT NULL) AND variant IS NOT NULL) AS variant,
            min(variant) <> max(variant) AS multi,
            coalesce(bool_or(json_format(json_extract(properties, '$["bot"]')) = 'true'), false) AS ua_bot,
            coalesce(json_format(json_extract(min_by(properties, tu) FILTER (WHERE (variant IS NOT NULL) AND properties IS NOT NULL), '$["paused"]')) = 'true', false) AS paused,
            coalesce(bool_or(coalesce(source, '') <> 'client') FILTER (WHERE variant IS NOT NULL), false) AS vouched,
            json_extract_scalar(min_by(properties, tu) FILTER (WHERE (variant IS NOT NULL) AND properties IS NOT NULL), '$["device"]') AS g0,
            json_extract_scalar(min_by(properties, tu) FILTER (WHERE (variant IS NOT NULL) AND properties IS NOT NULL), '$["plan"]') AS g1
        FROM src WHERE type = 'exposure' AND tu >= CAST(? AS BIGINT)
        GROUP BY user_id
        HAVING count(variant) > 0
    ) fx
),
-- The few distinct (variant, segment values) combinations, numbered (an ordered ROW_NUMBER over a
-- handful of rows): the wide strings then travel through the per-visitor-day steps as one integer.
cells AS (
    SELECT cv.*, row_number() OVER (ORDER BY variant, g0, g1) AS cell
    FROM (SELECT DISTINCT variant, g0, g1 FROM fe0 WHERE excluded IS NULL) cv
),
-- The included visitors; uid: a 64-bit hash of user_id (no global ROW_NUMBER: the work partitions).
fe AS (
    SELECT fe0.user_id, fe0.t0, (fe0.t0) / 86400000000 AS day0, cells.cell, from_big_endian_64(xxhash64(to_utf8(fe0.user_id))) AS uid
    FROM fe0 JOIN cells ON fe0.variant = cells.variant AND fe0.g0 IS NOT DISTINCT FROM cells.g0 AND fe0.g1 IS NOT DISTINCT FROM cells.g1
    WHERE fe0.excluded IS NULL
),
s1 AS (
    SELECT user_id, (tu) / 86400000000 AS day,
        min(tu) AS mt,
        max(tu) AS mx,
        CAST(count_if(type = 'page_view') AS DOUBLE) AS views,
        coalesce(sum(CASE WHEN value > cap.c THEN cap.c ELSE value END) FILTER (WHERE type = 'dwell'), 0) AS dwell,
        CAST(count_if(type = 'inquiry') AS DOUBLE) AS inq,
        coalesce(sum(value) FILTER (WHERE type = 'inquiry'), 0) AS inqv
    FROM src CROSS JOIN cap
    GROUP BY user_id, (tu) / 86400000000
),
j AS (
    SELECT s1.user_id, s1.day, s1.views, s1.dwell, s1.inq, s1.inqv,
        fe.uid, fe.t0, fe.day0, fe.cell,
        CASE
            WHEN s1.day > fe.day0 THEN 1
            WHEN s1.day = fe.day0 THEN CASE WHEN s1.mt IS NULL OR s1.mt >= fe.t0 THEN 1 ELSE 2 END
            WHEN s1.day > fe.day0 - CAST(? AS BIGINT) THEN 0
            WHEN s1.day = fe.day0 - CAST(? AS BIGINT) THEN CASE
                WHEN s1.mt IS NULL OR s1.mt >= fe.t0 - CAST(? AS BIGINT) * 86400000000 THEN 0
                WHEN s1.mx < fe.t0 - CAST(? AS BIGINT) * 86400000000 THEN -1
                ELSE 2 END
            ELSE -1
        END AS part
    FROM s1 JOIN fe ON s1.user_id = fe.user_id
),
mixed AS (
    SELECT user_id, uid, day, t0, day0, cell FROM j WHERE part = 2
),
fix AS (
    SELECT m.uid, m.day, CAST(e.tu >= m.t0 AS INTEGER) AS part, m.t0, m.day0, m.cell,
        CAST(count_if(e.type = 'page_view') AS DOUBLE) AS views,
        coalesce(sum(CASE WHEN e.value > cap.c THEN cap.c ELSE e.value END) FILTER (WHERE e.type = 'dwell'), 0) AS dwell,
        CAST(count_if(e.type = 'inquiry') AS DOUBLE) AS inq,
        coalesce(sum(e.value) FILTER (WHERE e.type = 'inquiry'), 0) AS inqv
    FROM src e JOIN mixed m ON e.user_id = m.user_id AND (e.tu) / 86400000000 = m.day CROSS JOIN cap
    WHERE e.tu >= m.t0 - CAST(? AS BIGINT) * 86400000000
    GROUP BY m.uid, m.day, CAST(e.tu >= m.t0 AS INTEGER), m.t0, m.day0, m.cell
),
-- Every visitor's days: the post-exposure (part 1) and pre-exposure (part 0) sums.
vd AS (
    SELECT uid, day, part, views, dwell, inq, inqv, day0, cell FROM j WHERE part IN (0, 1)
    UNION ALL
    SELECT uid, day, part, views, dwell, inq, inqv, day0, cell FROM fix
),
pre AS (
    SELECT uid, sum(views) AS q_views, sum(dwell) AS q_dwell, sum(inq) AS q_inq,
        CAST(sum(inq) > 0 AS DOUBLE) AS q_any, sum(inqv) AS q_inqv
    FROM vd WHERE part = 0 GROUP BY uid
),
-- More page views in a post-exposure day than allowed: a filter over rows, a tiny result.
rate_bots AS (
    SELECT DISTINCT uid FROM vd WHERE part = 1 AND views > CAST(? AS BIGINT)
),
post AS (
    SELECT uid, day, day0, cell, CASE WHEN day < day0 + CAST(? AS BIGINT) THEN views ELSE 0 END AS views, CASE WHEN day < day0 + CAST(? AS BIGINT) THEN dwell ELSE 0 END AS dwell, CASE WHEN day < day0 + CAST(? AS BIGINT) THEN inq ELSE 0 END AS inq, CASE WHEN day < day0 + CAST(? AS BIGINT) THEN inqv ELSE 0 END AS inqv,
        CASE WHEN day < day0 + CAST(? AS BIGINT) THEN inq ELSE 0 END AS wq  -- the day's inquiries in the ROI window
    FROM vd WHERE part = 1 AND day < day0 + greatest(CAST(? AS BIGINT), CAST(? AS BIGINT)) AND uid NOT IN (SELECT uid FROM rate_bots)
),
-- Every window function shares one partition and order, so one sort: the totals come from each
-- visitor's ``is_last`` row. A second window over the whole partition costs another sort (on 1M
-- visitors ~1.5x this one; with ORDER BY and a full frame ~10x), for values the last row already has.
cum AS (
    SELECT post.*,
        sum(views) OVER (PARTITION BY uid ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c_views,
        sum(dwell) OVER (PARTITION BY uid ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c_dwell,
        sum(inq) OVER (PARTITION BY uid ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c_inq,
        sum(inqv) OVER (PARTITION BY uid ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c_inqv,
        sum(wq) OVER (PARTITION BY uid ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c_wq,
        lead(day) OVER (PARTITION BY uid ORDER BY day) IS NULL AS is_last
    FROM post
),
caps AS (
    SELECT CAST(? AS DOUBLE) AS cap_views, element_at(q_arr1, CAST(floor((CAST(? AS DOUBLE)) * (cardinality(q_arr1) - 1)) AS BIGINT) + 1) + ((CAST(? AS DOUBLE)) * (cardinality(q_arr1) - 1) - floor((CAST(? AS DOUBLE)) * (cardinality(q_arr1) - 1))) * (element_at(q_arr1, CAST(least(floor((CAST(? AS DOUBLE)) * (cardinality(q_arr1) - 1)) + 1, cardinality(q_arr1) - 1) AS BIGINT) + 1) - element_at(q_arr1, CAST(floor((CAST(? AS DOUBLE)) * (cardinality(q_arr1) - 1)) AS BIGINT) + 1)) AS cap_dwell, element_at(q_arr2, CAST(floor((CAST(? AS DOUBLE)) * (cardinality(q_arr2) - 1)) AS BIGINT) + 1) + ((CAST(? AS DOUBLE)) * (cardinality(q_arr2) - 1) - floor((CAST(? AS DOUBLE)) * (cardinality(q_arr2) - 1))) * (element_at(q_arr2, CAST(least(floor((CAST(? AS DOUBLE)) * (cardinality(q_arr2) - 1)) + 1, cardinality(q_arr2) - 1) AS BIGINT) + 1) - element_at(q_arr2, CAST(floor((CAST(? AS DOUBLE)) * (cardinality(q_arr2) - 1)) AS BIGINT) + 1)) AS cap_inq, CAST(NULL AS DOUBLE) AS cap_inqv FROM (SELECT array_sort(array_agg(c_dwell) FILTER (WHERE c_dwell IS NOT NULL)) AS q_arr1, array_sort(array_agg(c_inq) FILTER (WHERE c_inq IS NOT NULL)) AS q_arr2 FROM cum WHERE is_last) q_sorted
),
d AS (
    SELECT c.cell, c.day, c.day0, CAST(c.day = c.day0 AS DOUBLE) AS entry,
        least(c.c_views, k.cap_views) AS c_views, least(c.c_views, k.cap_views) - least(c.c_views - c.views, k.cap_views) AS d_views,
        least(c.c_dwell, k.cap_dwell) AS c_dwell, least(c.c_dwell, k.cap_dwell) - least(c.c_dwell - c.dwell, k.cap_dwell) AS d_dwell,
        least(c.c_inq, k.cap_inq) AS c_inq, least(c.c_inq, k.cap_inq) - least(c.c_inq - c.inq, k.cap_inq) AS d_inq,
        c.c_inqv AS c_inqv, c.inqv AS d_inqv,
        CAST(c.c_inq > 0 AS DOUBLE) AS c_any, CAST(c.c_inq > 0 AS DOUBLE) - CAST(c.c_inq - c.inq > 0 AS DOUBLE) AS d_any,
        CAST(c.inq > 0 AS DOUBLE) AS a_any,
        least(coalesce(p.q_views, 0), k.cap_views) AS q_views, least(coalesce(p.q_dwell, 0), k.cap_dwell) AS q_dwell, least(coalesce(p.q_inq, 0), k.cap_inq) AS q_inq, coalesce(p.q_inqv, 0) AS q_inqv, coalesce(p.q_any, 0) AS q_any,
        CAST(c.day0 + CAST(? AS BIGINT) <= CAST(? AS BIGINT) AS DOUBLE) AS mature,
        CASE WHEN c.day0 + CAST(? AS BIGINT) <= CAST(? AS BIGINT) THEN least(c.c_wq, k.cap_inq) ELSE 0 END AS c_wq,
        CASE WHEN c.day0 + CAST(? AS BIGINT) <= CAST(? AS BIGINT) THEN least(c.c_wq, k.cap_inq) - least(c.c_wq - c.wq, k.cap_inq) ELSE 0 END AS d_wq
    FROM cum c LEFT JOIN pre p ON c.uid = p.uid CROSS JOIN caps k
),
fine AS (
    SELECT cell, day, day0,
        sum(entry) AS n,
        sum(d_views) AS s_views,
        sum(d_dwell) AS s_dwell,
        sum(d_inq) AS s_inq,
        sum(d_any) AS s_any,
        sum(d_inqv) AS s_inqv,
        sum(entry * q_views) AS s_q_views,
        sum(entry * q_dwell) AS s_q_dwell,
        sum(entry * q_inq) AS s_q_inq,
        sum(entry * q_any) AS s_q_any,
        sum(entry * q_inqv) AS s_q_inqv,
        sum(d_wq) AS s_wq,
        sum(entry * mature) AS s_mature,
        sum(d_views * (2 * c_views - d_views)) AS ss_views,
        sum(d_dwell * (2 * c_dwell - d_dwell)) AS ss_dwell,
        sum(d_inq * (2 * c_inq - d_inq)) AS ss_inq,
        sum(d_any * (2 * c_any - d_any)) AS ss_any,
        sum(d_inqv * (2 * c_inqv - d_inqv)) AS ss_inqv,
        sum(entry * q_views * q_views) AS ss_q_views,
        sum(entry * q_dwell * q_dwell) AS ss_q_dwell,
        sum(entry * q_inq * q_inq) AS ss_q_inq,
        sum(entry * q_any * q_any) AS ss_q_any,
        sum(entry * q_inqv * q_inqv) AS ss_q_inqv,
        sum(d_wq * (2 * c_wq - d_wq)) AS ss_wq,
        sum(entry * mature * mature) AS ss_mature,
        sum(d_dwell * c_views + d_views * c_dwell - d_dwell * d_views) AS x_dwell__views,
        sum(entry * q_dwell * q_views) AS x_q_dwell__q_views,
        sum(d_dwell * q_dwell) AS x_dwell__q_dwell,
        sum(d_dwell * q_views) AS x_dwell__q_views,
        sum(d_views * q_dwell) AS x_views__q_dwell,
        sum(d_views * q_views) AS x_views__q_views,
        sum(d_inq * q_inq) AS x_inq__q_inq,
        sum(d_any * q_any) AS x_any__q_any,
        sum(d_inqv * q_inqv) AS x_inqv__q_inqv,
        sum(d_wq * mature) AS x_wq__mature,
        sum(a_any) AS a_s_any,
        sum(d_views * d_views) AS a_ss_views,
        sum(d_dwell * d_dwell) AS a_ss_dwell,
        sum(d_inq * d_inq) AS a_ss_inq,
        sum(a_any * a_any) AS a_ss_any,
        sum(d_inqv * d_inqv) AS a_ss_inqv,
        sum(d_dwell * d_views) AS a_x_dwell__views
    FROM d GROUP BY cell, day, day0
)
SELECT CAST('sums' AS VARCHAR) AS part,
    CAST(GROUPING(day) AS BIGINT) AS grp_day,
    CAST(GROUPING(g0) AS BIGINT) AS grp_g0,
    CAST(GROUPING(g1) AS BIGINT) AS grp_g1,
    CAST(variant AS VARCHAR) AS variant,
    CAST(day AS BIGINT) AS day,
    CAST(g0 AS VARCHAR) AS g0,
    CAST(g1 AS VARCHAR) AS g1,
    CAST(sum(n) AS DOUBLE) AS n,
    CAST(sum(s_views) AS DOUBLE) AS s_views,
    CAST(sum(s_dwell) AS DOUBLE) AS s_dwell,
    CAST(sum(s_inq) AS DOUBLE) AS s_inq,
    CAST(sum(s_any) AS DOUBLE) AS s_any,
    CAST(sum(s_inqv) AS DOUBLE) AS s_inqv,
    CAST(sum(s_q_views) AS DOUBLE) AS s_q_views,
    CAST(sum(s_q_dwell) AS DOUBLE) AS s_q_dwell,
    CAST(sum(s_q_inq) AS DOUBLE) AS s_q_inq,
    CAST(sum(s_q_any) AS DOUBLE) AS s_q_any,
    CAST(sum(s_q_inqv) AS DOUBLE) AS s_q_inqv,
    CAST(sum(s_wq) AS DOUBLE) AS s_wq,
    CAST(sum(s_mature) AS DOUBLE) AS s_mature,
    CAST(sum(ss_views) AS DOUBLE) AS ss_views,
    CAST(sum(ss_dwell) AS DOUBLE) AS ss_dwell,
    CAST(sum(ss_inq) AS DOUBLE) AS ss_inq,
    CAST(sum(ss_any) AS DOUBLE) AS ss_any,
    CAST(sum(ss_inqv) AS DOUBLE) AS ss_inqv,
    CAST(sum(ss_q_views) AS DOUBLE) AS ss_q_views,
    CAST(sum(ss_q_dwell) AS DOUBLE) AS ss_q_dwell,
    CAST(sum(ss_q_inq) AS DOUBLE) AS ss_q_inq,
    CAST(sum(ss_q_any) AS DOUBLE) AS ss_q_any,
    CAST(sum(ss_q_inqv) AS DOUBLE) AS ss_q_inqv,
    CAST(sum(ss_wq) AS DOUBLE) AS ss_wq,
    CAST(sum(ss_mature) AS DOUBLE) AS ss_mature,
    CAST(sum(x_dwell__views) AS DOUBLE) AS x_dwell__views,
    CAST(sum(x_q_dwell__q_views) AS DOUBLE) AS x_q_dwell__q_views,
    CAST(sum(x_dwell__q_dwell) AS DOUBLE) AS x_dwell__q_dwell,
    CAST(sum(x_dwell__q_views) AS DOUBLE) AS x_dwell__q_views,
    CAST(sum(x_views__q_dwell) AS DOUBLE) AS x_views__q_dwell,
    CAST(sum(x_views__q_views) AS DOUBLE) AS x_views__q_views,
    CAST(sum(x_inq__q_inq) AS DOUBLE) AS x_inq__q_inq,
    CAST(sum(x_any__q_any) AS DOUBLE) AS x_any__q_any,
    CAST(sum(x_inqv__q_inqv) AS DOUBLE) AS x_inqv__q_inqv,
    CAST(sum(x_wq__mature) AS DOUBLE) AS x_wq__mature,
    CAST(NULL AS VARCHAR) AS reason,
    CAST(NULL AS BIGINT) AS visitors,
    CAST(NULL AS DOUBLE) AS cap_event,
    CAST(NULL AS DOUBLE) AS cap_views,
    CAST(NULL AS DOUBLE) AS cap_dwell,
    CAST(NULL AS DOUBLE) AS cap_inq,
    CAST(NULL AS DOUBLE) AS cap_inqv
FROM fine JOIN cells USING (cell)
GROUP BY GROUPING SETS ((variant, day), (variant, g0), (variant, g1))
UNION ALL
SELECT CAST('age' AS VARCHAR) AS part,
    CAST(NULL AS BIGINT) AS grp_day,
    CAST(NULL AS BIGINT) AS grp_g0,
    CAST(NULL AS BIGINT) AS grp_g1,
    CAST(variant AS VARCHAR) AS variant,
    CAST(age AS BIGINT) AS day,
    CAST(NULL AS VARCHAR) AS g0,
    CAST(NULL AS VARCHAR) AS g1,
    CAST(0 AS DOUBLE) AS n,
    CAST(sum(s_views) AS DOUBLE) AS s_views,
    CAST(sum(s_dwell) AS DOUBLE) AS s_dwell,
    CAST(sum(s_inq) AS DOUBLE) AS s_inq,
    CAST(sum(a_s_any) AS DOUBLE) AS s_any,
    CAST(sum(s_inqv) AS DOUBLE) AS s_inqv,
    CAST(0 AS DOUBLE) AS s_q_views,
    CAST(0 AS DOUBLE) AS s_q_dwell,
    CAST(0 AS DOUBLE) AS s_q_inq,
    CAST(0 AS DOUBLE) AS s_q_any,
    CAST(0 AS DOUBLE) AS s_q_inqv,
    CAST(0 AS DOUBLE) AS s_wq,
    CAST(0 AS DOUBLE) AS s_mature,
    CAST(sum(a_ss_views) AS DOUBLE) AS ss_views,
    CAST(sum(a_ss_dwell) AS DOUBLE) AS ss_dwell,
    CAST(sum(a_ss_inq) AS DOUBLE) AS ss_inq,
    CAST(sum(a_ss_any) AS DOUBLE) AS ss_any,
    CAST(sum(a_ss_inqv) AS DOUBLE) AS ss_inqv,
    CAST(0 AS DOUBLE) AS ss_q_views,
    CAST(0 AS DOUBLE) AS ss_q_dwell,
    CAST(0 AS DOUBLE) AS ss_q_inq,
    CAST(0 AS DOUBLE) AS ss_q_any,
    CAST(0 AS DOUBLE) AS ss_q_inqv,
    CAST(0 AS DOUBLE) AS ss_wq,
    CAST(0 AS DOUBLE) AS ss_mature,
    CAST(sum(a_x_dwell__views) AS DOUBLE) AS x_dwell__views,
    CAST(0 AS DOUBLE) AS x_q_dwell__q_views,
    CAST(0 AS DOUBLE) AS x_dwell__q_dwell,
    CAST(0 AS DOUBLE) AS x_dwell__q_views,
    CAST(0 AS DOUBLE) AS x_views__q_dwell,
    CAST(0 AS DOUBLE) AS x_views__q_views,
    CAST(0 AS DOUBLE) AS x_inq__q_inq,
    CAST(0 AS DOUBLE) AS x_any__q_any,
    CAST(0 AS DOUBLE) AS x_inqv__q_inqv,
    CAST(0 AS DOUBLE) AS x_wq__mature,
    CAST(NULL AS VARCHAR) AS reason,
    CAST(NULL AS BIGINT) AS visitors,
    CAST(NULL AS DOUBLE) AS cap_event,
    CAST(NULL AS DOUBLE) AS cap_views,
    CAST(NULL AS DOUBLE) AS cap_dwell,
    CAST(NULL AS DOUBLE) AS cap_inq,
    CAST(NULL AS DOUBLE) AS cap_inqv
FROM (SELECT fine.*, day - day0 AS age FROM fine) fa JOIN cells USING (cell)
WHERE age <= CAST(? AS BIGINT) AND day < CAST(? AS BIGINT)
GROUP BY variant, age
UNION ALL
SELECT CAST('excluded' AS VARCHAR) AS part,
    CAST(NULL AS BIGINT) AS grp_day,
    CAST(NULL AS BIGINT) AS grp_g0,
    CAST(NULL AS BIGINT) AS grp_g1,
    CAST(CASE WHEN excluded IN ('unknown', 'paused') THEN variant END AS VARCHAR) AS variant,
    CAST(NULL AS BIGINT) AS day,
    CAST(NULL AS VARCHAR) AS g0,
    CAST(NULL AS VARCHAR) AS g1,
    CAST(NULL AS DOUBLE) AS n,
    CAST(NULL AS DOUBLE) AS s_views,
    CAST(NULL AS DOUBLE) AS s_dwell,
    CAST(NULL AS DOUBLE) AS s_inq,
    CAST(NULL AS DOUBLE) AS s_any,
    CAST(NULL AS DOUBLE) AS s_inqv,
    CAST(NULL AS DOUBLE) AS s_q_views,
    CAST(NULL AS DOUBLE) AS s_q_dwell,
    CAST(NULL AS DOUBLE) AS s_q_inq,
    CAST(NULL AS DOUBLE) AS s_q_any,
    CAST(NULL AS DOUBLE) AS s_q_inqv,
    CAST(NULL AS DOUBLE) AS s_wq,
    CAST(NULL AS DOUBLE) AS s_mature,
    CAST(NULL AS DOUBLE) AS ss_views,
    CAST(NULL AS DOUBLE) AS ss_dwell,
    CAST(NULL AS DOUBLE) AS ss_inq,
    CAST(NULL AS DOUBLE) AS ss_any,
    CAST(NULL AS DOUBLE) AS ss_inqv,
    CAST(NULL AS DOUBLE) AS ss_q_views,
    CAST(NULL AS DOUBLE) AS ss_q_dwell,
    CAST(NULL AS DOUBLE) AS ss_q_inq,
    CAST(NULL AS DOUBLE) AS ss_q_any,
    CAST(NULL AS DOUBLE) AS ss_q_inqv,
    CAST(NULL AS DOUBLE) AS ss_wq,
    CAST(NULL AS DOUBLE) AS ss_mature,
    CAST(NULL AS DOUBLE) AS x_dwell__views,
    CAST(NULL AS DOUBLE) AS x_q_dwell__q_views,
    CAST(NULL AS DOUBLE) AS x_dwell__q_dwell,
    CAST(NULL AS DOUBLE) AS x_dwell__q_views,
    CAST(NULL AS DOUBLE) AS x_views__q_dwell,
    CAST(NULL AS DOUBLE) AS x_views__q_views,
    CAST(NULL AS DOUBLE) AS x_inq__q_inq,
    CAST(NULL AS DOUBLE) AS x_any__q_any,
    CAST(NULL AS DOUBLE) AS x_inqv__q_inqv,
    CAST(NULL AS DOUBLE) AS x_wq__mature,
    CAST(excluded AS VARCHAR) AS reason,
    CAST(count(*) AS BIGINT) AS visitors,
    CAST(NULL AS DOUBLE) AS cap_event,
    CAST(NULL AS DOUBLE) AS cap_views,
    CAST(NULL AS DOUBLE) AS cap_dwell,
    CAST(NULL AS DOUBLE) AS cap_inq,
    CAST(NULL AS DOUBLE) AS cap_inqv
FROM fe0 WHERE excluded IS NOT NULL GROUP BY excluded, CASE WHEN excluded IN ('unknown', 'paused') THEN variant END
UNION ALL
SELECT CAST('excluded' AS VARCHAR) AS part,
    CAST(NULL AS BIGINT) AS grp_day,
    CAST(NULL AS BIGINT) AS grp_g0,
    CAST(NULL AS BIGINT) AS grp_g1,
    CAST(NULL AS VARCHAR) AS variant,
    CAST(NULL AS BIGINT) AS day,
    CAST(NULL AS VARCHAR) AS g0,
    CAST(NULL AS VARCHAR) AS g1,
    CAST(NULL AS DOUBLE) AS n,
    CAST(NULL AS DOUBLE) AS s_views,
    CAST(NULL AS DOUBLE) AS s_dwell,
    CAST(NULL AS DOUBLE) AS s_inq,
    CAST(NULL AS DOUBLE) AS s_any,
    CAST(NULL AS DOUBLE) AS s_inqv,
    CAST(NULL AS DOUBLE) AS s_q_views,
    CAST(NULL AS DOUBLE) AS s_q_dwell,
    CAST(NULL AS DOUBLE) AS s_q_inq,
    CAST(NULL AS DOUBLE) AS s_q_any,
    CAST(NULL AS DOUBLE) AS s_q_inqv,
    CAST(NULL AS DOUBLE) AS s_wq,
    CAST(NULL AS DOUBLE) AS s_mature,
    CAST(NULL AS DOUBLE) AS ss_views,
    CAST(NULL AS DOUBLE) AS ss_dwell,
    CAST(NULL AS DOUBLE) AS ss_inq,
    CAST(NULL AS DOUBLE) AS ss_any,
    CAST(NULL AS DOUBLE) AS ss_inqv,
    CAST(NULL AS DOUBLE) AS ss_q_views,
    CAST(NULL AS DOUBLE) AS ss_q_dwell,
    CAST(NULL AS DOUBLE) AS ss_q_inq,
    CAST(NULL AS DOUBLE) AS ss_q_any,
    CAST(NULL AS DOUBLE) AS ss_q_inqv,
    CAST(NULL AS DOUBLE) AS ss_wq,
    CAST(NULL AS DOUBLE) AS ss_mature,
    CAST(NULL AS DOUBLE) AS x_dwell__views,
    CAST(NULL AS DOUBLE) AS x_q_dwell__q_views,
    CAST(NULL AS DOUBLE) AS x_dwell__q_dwell,
    CAST(NULL AS DOUBLE) AS x_dwell__q_views,
    CAST(NULL AS DOUBLE) AS x_views__q_dwell,
    CAST(NULL AS DOUBLE) AS x_views__q_views,
    CAST(NULL AS DOUBLE) AS x_inq__q_inq,
    CAST(NULL AS DOUBLE) AS x_any__q_any,
    CAST(NULL AS DOUBLE) AS x_inqv__q_inqv,
    CAST(NULL AS DOUBLE) AS x_wq__mature,
    CAST('rate' AS VARCHAR) AS reason,
    CAST(count(*) AS BIGINT) AS visitors,
    CAST(NULL AS DOUBLE) AS cap_event,
    CAST(NULL AS DOUBLE) AS cap_views,
    CAST(NULL AS DOUBLE) AS cap_dwell,
    CAST(NULL AS DOUBLE) AS cap_inq,
    CAST(NULL AS DOUBLE) AS cap_inqv
FROM rate_bots
UNION ALL
SELECT CAST('caps' AS VARCHAR) AS part,
    CAST(NULL AS BIGINT) AS grp_day,
    CAST(NULL AS BIGINT) AS grp_g0,
    CAST(NULL AS BIGINT) AS grp_g1,
    CAST(NULL AS VARCHAR) AS variant,
    CAST(NULL AS BIGINT) AS day,
    CAST(NULL AS VARCHAR) AS g0,
    CAST(NULL AS VARCHAR) AS g1,
    CAST(NULL AS DOUBLE) AS n,
    CAST(NULL AS DOUBLE) AS s_views,
    CAST(NULL AS DOUBLE) AS s_dwell,
    CAST(NULL AS DOUBLE) AS s_inq,
    CAST(NULL AS DOUBLE) AS s_any,
    CAST(NULL AS DOUBLE) AS s_inqv,
    CAST(NULL AS DOUBLE) AS s_q_views,
    CAST(NULL AS DOUBLE) AS s_q_dwell,
    CAST(NULL AS DOUBLE) AS s_q_inq,
    CAST(NULL AS DOUBLE) AS s_q_any,
    CAST(NULL AS DOUBLE) AS s_q_inqv,
    CAST(NULL AS DOUBLE) AS s_wq,
    CAST(NULL AS DOUBLE) AS s_mature,
    CAST(NULL AS DOUBLE) AS ss_views,
    CAST(NULL AS DOUBLE) AS ss_dwell,
    CAST(NULL AS DOUBLE) AS ss_inq,
    CAST(NULL AS DOUBLE) AS ss_any,
    CAST(NULL AS DOUBLE) AS ss_inqv,
    CAST(NULL AS DOUBLE) AS ss_q_views,
    CAST(NULL AS DOUBLE) AS ss_q_dwell,
    CAST(NULL AS DOUBLE) AS ss_q_inq,
    CAST(NULL AS DOUBLE) AS ss_q_any,
    CAST(NULL AS DOUBLE) AS ss_q_inqv,
    CAST(NULL AS DOUBLE) AS ss_wq,
    CAST(NULL AS DOUBLE) AS ss_mature,
    CAST(NULL AS DOUBLE) AS x_dwell__views,
    CAST(NULL AS DOUBLE) AS x_q_dwell__q_views,
    CAST(NULL AS DOUBLE) AS x_dwell__q_dwell,
    CAST(NULL AS DOUBLE) AS x_dwell__q_views,
    CAST(NULL AS DOUBLE) AS x_views__q_dwell,
    CAST(NULL AS DOUBLE) AS x_views__q_views,
    CAST(NULL AS DOUBLE) AS x_inq__q_inq,
    CAST(NULL AS DOUBLE) AS x_any__q_any,
    CAST(NULL AS DOUBLE) AS x_inqv__q_inqv,
    CAST(NULL AS DOUBLE) AS x_wq__mature,
    CAST(NULL AS VARCHAR) AS reason,
    CAST(NULL AS BIGINT) AS visitors,
    CAST((SELECT c FROM cap) AS DOUBLE) AS cap_event,
    CAST(cap_views AS DOUBLE) AS cap_views,
    CAST(cap_dwell AS DOUBLE) AS cap_dwell,
    CAST(cap_inq AS DOUBLE) AS cap_inq,
    CAST(cap_inqv AS DOUBLE) AS cap_inqv
FROM caps
UNION ALL
SELECT CAST('keys' AS VARCHAR) AS part,
    CAST(NULL AS BIGINT) AS grp_day,
    CAST(NULL AS BIGINT) AS grp_g0,
    CAST(NULL AS BIGINT) AS grp_g1,
    CAST(NULL AS VARCHAR) AS variant,
    CAST(NULL AS BIGINT) AS day,
    CAST(NULL AS VARCHAR) AS g0,
    CAST(NULL AS VARCHAR) AS g1,
    CAST(NULL AS DOUBLE) AS n,
    CAST(NULL AS DOUBLE) AS s_views,
    CAST(NULL AS DOUBLE) AS s_dwell,
    CAST(NULL AS DOUBLE) AS s_inq,
    CAST(NULL AS DOUBLE) AS s_any,
    CAST(NULL AS DOUBLE) AS s_inqv,
    CAST(NULL AS DOUBLE) AS s_q_views,
    CAST(NULL AS DOUBLE) AS s_q_dwell,
    CAST(NULL AS DOUBLE) AS s_q_inq,
    CAST(NULL AS DOUBLE) AS s_q_any,
    CAST(NULL AS DOUBLE) AS s_q_inqv,
    CAST(NULL AS DOUBLE) AS s_wq,
    CAST(NULL AS DOUBLE) AS s_mature,
    CAST(NULL AS DOUBLE) AS ss_views,
    CAST(NULL AS DOUBLE) AS ss_dwell,
    CAST(NULL AS DOUBLE) AS ss_inq,
    CAST(NULL AS DOUBLE) AS ss_any,
    CAST(NULL AS DOUBLE) AS ss_inqv,
    CAST(NULL AS DOUBLE) AS ss_q_views,
    CAST(NULL AS DOUBLE) AS ss_q_dwell,
    CAST(NULL AS DOUBLE) AS ss_q_inq,
    CAST(NULL AS DOUBLE) AS ss_q_any,
    CAST(NULL AS DOUBLE) AS ss_q_inqv,
    CAST(NULL AS DOUBLE) AS ss_wq,
    CAST(NULL AS DOUBLE) AS ss_mature,
    CAST(NULL AS DOUBLE) AS x_dwell__views,
    CAST(NULL AS DOUBLE) AS x_q_dwell__q_views,
    CAST(NULL AS DOUBLE) AS x_dwell__q_dwell,
    CAST(NULL AS DOUBLE) AS x_dwell__q_views,
    CAST(NULL AS DOUBLE) AS x_views__q_dwell,
    CAST(NULL AS DOUBLE) AS x_views__q_views,
    CAST(NULL AS DOUBLE) AS x_inq__q_inq,
    CAST(NULL AS DOUBLE) AS x_any__q_any,
    CAST(NULL AS DOUBLE) AS x_inqv__q_inqv,
    CAST(NULL AS DOUBLE) AS x_wq__mature,
    CAST(NULL AS VARCHAR) AS reason,
    CAST(count(*) - count(DISTINCT uid) AS BIGINT) AS visitors,
    CAST(NULL AS DOUBLE) AS cap_event,
    CAST(NULL AS DOUBLE) AS cap_views,
    CAST(NULL AS DOUBLE) AS cap_dwell,
    CAST(NULL AS DOUBLE) AS cap_inq,
    CAST(NULL AS DOUBLE) AS cap_inqv
FROM fe
;

-- ==== served pages query (armor_ab.stats.pages.build_pages_query) ====
WITH x AS (
    SELECT user_id,
        min_by(CAST(ROW(variant, item_id, properties) AS ROW(variant VARCHAR, item_id VARCHAR, props VARCHAR)), tu) FILTER (WHERE (variant IS NOT NULL) AND CAST(ROW(variant, item_id, properties) AS ROW(variant VARCHAR, item_id VARCHAR, props VARCHAR)) IS NOT NULL) AS fx,
        min(variant) <> max(variant) AS multi,
        coalesce(bool_or(json_format(json_extract(properties, '$["bot"]')) = 'true'), false) AS bot,
        coalesce(bool_or(coalesce(source, '') <> 'client') FILTER (WHERE variant IS NOT NULL), false) AS vouched
    FROM (
        SELECT user_id, variant, item_id, properties, (CAST(to_unixtime(date_trunc('second', ts)) AS BIGINT) * 1000000 + CAST(round((to_unixtime(ts) - to_unixtime(date_trunc('second', ts))) * 1e6) AS BIGINT)) AS tu, source
        FROM events WHERE experiment = CAST(? AS VARCHAR) AND type = 'exposure' AND (CAST(to_unixtime(date_trunc('second', ts)) AS BIGINT) * 1000000 + CAST(round((to_unixtime(ts) - to_unixtime(date_trunc('second', ts))) * 1e6) AS BIGINT)) BETWEEN CAST(? AS BIGINT) AND CAST(? AS BIGINT)
    ) ex
    GROUP BY user_id
    HAVING count(variant) > 0
),
v AS (
    SELECT fx.variant AS variant, fx.item_id AS item_id,
        nullif(json_extract_scalar(fx.props, '$["page"]'), '') AS page,
        nullif(json_extract_scalar(fx.props, '$["fallback"]'), '') AS fallback
    FROM x WHERE NOT multi AND contains(CAST(? AS ARRAY(VARCHAR)), fx.variant) AND NOT coalesce(json_format(json_extract(fx.props, '$["paused"]')) = 'true', false) AND NOT bot AND vouched
),
g AS (
    SELECT variant, item_id, page, fallback, count(*) AS visitors
    FROM v WHERE page IS NOT NULL OR fallback IS NOT NULL
    GROUP BY variant, item_id, page, fallback
),
changed AS (
    SELECT variant, item_id, sum(visitors) AS visitors, count(*) AS versions
    FROM g WHERE item_id IS NOT NULL
    GROUP BY variant, item_id
    HAVING count(DISTINCT page) > 1 OR (bool_or(fallback IS NULL) AND bool_or(fallback IS NOT NULL))
),
listed AS (
    SELECT * FROM changed ORDER BY visitors DESC, item_id, variant LIMIT 20
)
SELECT CAST('served' AS VARCHAR) AS part,
    CAST(variant AS VARCHAR) AS variant,
    CAST(NULL AS VARCHAR) AS item_id,
    CAST(NULL AS VARCHAR) AS page,
    CAST(fallback AS VARCHAR) AS fallback,
    CAST(sum(visitors) AS BIGINT) AS visitors,
    CAST(NULL AS BIGINT) AS item_visitors,
    CAST(NULL AS BIGINT) AS versions
FROM g GROUP BY variant, fallback
UNION ALL
SELECT CAST('changed' AS VARCHAR) AS part,
    CAST(NULL AS VARCHAR) AS variant,
    CAST(NULL AS VARCHAR) AS item_id,
    CAST(NULL AS VARCHAR) AS page,
    CAST(NULL AS VARCHAR) AS fallback,
    CAST(count(*) AS BIGINT) AS visitors,
    CAST(NULL AS BIGINT) AS item_visitors,
    CAST(NULL AS BIGINT) AS versions
FROM changed
UNION ALL
SELECT CAST('version' AS VARCHAR) AS part,
    CAST(variant AS VARCHAR) AS variant,
    CAST(item_id AS VARCHAR) AS item_id,
    CAST(page AS VARCHAR) AS page,
    CAST(fallback AS VARCHAR) AS fallback,
    CAST(visitors AS BIGINT) AS visitors,
    CAST(item_visitors AS BIGINT) AS item_visitors,
    CAST(versions AS BIGINT) AS versions
FROM (
    SELECT g.variant, g.item_id, g.page, g.fallback, g.visitors, l.visitors AS item_visitors, l.versions,
        row_number() OVER (PARTITION BY g.variant, g.item_id
                           ORDER BY g.visitors DESC, g.page NULLS LAST, g.fallback NULLS FIRST) AS rank_in_item
    FROM g JOIN listed l ON g.variant = l.variant AND g.item_id = l.item_id
) ranked WHERE rank_in_item <= 10
;
